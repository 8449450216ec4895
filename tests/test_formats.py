"""netfix.formats (ImageFolder, CIFARBinary, ArrayDataset, find / cifar_root) and netfix.transforms.

Every test writes its own small files in tmp_path: PNGs in class folders, CIFAR binary records, .npy arrays."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from netfix.errors import ConfigError, DataError, DatasetNotFoundError, DataTypeError, UnknownNameError
from netfix.formats import ArrayDataset, CIFARBinary, ImageFolder, MissingDataError, cifar_root, data_home, find
from netfix.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, ToTensor, pil_to_tensor

RNG = np.random.default_rng(0)


def chw(a: np.ndarray) -> torch.Tensor:
    """What a uint8 H x W [x C] image should read as: float32 C x H x W in [0, 1]."""
    t = torch.from_numpy(a.astype(np.float32) / 255.0)
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


# ---------------------------------------------------------------------------------------------------------------
# ImageFolder
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    """root/cat: two RGB PNGs (and noise to skip); root/dog: a grayscale PNG; returns (root, {relpath: array})."""
    root = tmp_path / "imgs"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    arrays = {
        "cat/a.png": RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8),
        "cat/b.PNG": RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8),  # extension compared case-insensitively
        "dog/c.png": RNG.integers(0, 256, (4, 5), dtype=np.uint8),
    }
    for rel, a in arrays.items():
        Image.fromarray(a).save(root / rel, format="PNG")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "._a.png").write_bytes(b"macOS resource fork")  # hidden: skipped, never opened
    (root / ".ipynb_checkpoints").mkdir()  # hidden folder: not a class
    Image.fromarray(arrays["cat/a.png"]).save(root / ".ipynb_checkpoints" / "x.png")
    return root, arrays


def test_image_folder_classes_labels_and_exact_pixels(folder):
    root, arrays = folder
    ds = ImageFolder(root)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert [(Path(p).relative_to(root).as_posix(), k) for p, k in ds.samples] == [
        ("cat/a.png", 0), ("cat/b.PNG", 0), ("dog/c.png", 1)]
    assert ds.targets.dtype == torch.int64 and ds.targets.tolist() == [0, 0, 1]
    assert len(ds) == 3
    for i, rel in enumerate(arrays):
        x, y = ds[i]
        assert x.dtype == torch.float32 and torch.equal(x, chw(arrays[rel]))
        assert y == ds.targets[i]
    assert ds[2][0].shape == (1, 4, 5)  # grayscale: one channel
    assert ds[0][0].shape == (3, 4, 5)
    assert torch.equal(ds[-1][0], ds[2][0])
    with pytest.raises(IndexError):
        ds[3]


def test_image_folder_reads_lazily(folder, monkeypatch):
    root, _ = folder
    opened = []
    real_open = Image.open

    def counting_open(fp, *a, **k):
        opened.append(str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(Image, "open", counting_open)
    ds = ImageFolder(root)
    assert opened == [] and ds.targets.tolist() == [0, 0, 1]  # labels come from the folders alone
    ds[1]
    assert opened == [ds.samples[1][0]]


def test_image_folder_modes_channels_and_transform(tmp_path):
    root = tmp_path / "mixed"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    rgba = RNG.integers(0, 256, (3, 3, 4), dtype=np.uint8)
    gray = RNG.integers(0, 256, (3, 3), dtype=np.uint8)
    wide = RNG.integers(0, 65536, (3, 3), dtype=np.uint16)
    Image.fromarray(rgba, mode="RGBA").save(root / "a" / "rgba.png")
    Image.fromarray(gray).save(root / "a" / "gray.bmp")
    Image.fromarray(wide).save(root / "b" / "wide.png")  # 16-bit grayscale PNG
    ds = ImageFolder(root)
    names = [Path(p).name for p, _ in ds.samples]
    assert names == ["gray.bmp", "rgba.png", "wide.png"]
    assert torch.equal(ds[0][0], chw(gray))
    assert torch.equal(ds[1][0], chw(rgba[..., :3]))  # alpha dropped
    assert torch.allclose(ds[2][0], torch.from_numpy(wide.astype(np.float32) / 65535.0)[None])

    as_rgb = ImageFolder(root, channels=3)  # one shape for all, so a DataLoader can stack them
    assert {tuple(as_rgb[i][0].shape) for i in range(3)} == {(3, 3, 3)}
    assert torch.equal(as_rgb[0][0], chw(gray)[[0, 0, 0]])
    assert ImageFolder(root, channels=1)[1][0].shape == (1, 3, 3)

    seen = []
    ds = ImageFolder(root, transform=lambda im: seen.append(im.mode) or torch.zeros(2))
    assert torch.equal(ds[1][0], torch.zeros(2)) and seen == ["RGB"]  # the PIL image, converted, goes to transform
    only_png = ImageFolder(root, extensions=".png")
    assert [Path(p).name for p, _ in only_png.samples] == ["rgba.png", "wide.png"]


def test_image_folder_skips_links_outside_root_and_nests(tmp_path):
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(outside)
    root = tmp_path / "root"
    (root / "k" / "deeper").mkdir(parents=True)
    Image.fromarray(np.ones((2, 2), np.uint8)).save(root / "k" / "deeper" / "in.png")
    os.symlink(outside, root / "k" / "link_out.png")
    os.symlink(root / "k" / "deeper" / "in.png", root / "k" / "link_in.png")
    os.symlink(root / "k" / "missing.png", root / "k" / "broken.png")
    ds = ImageFolder(root)
    assert sorted(Path(p).name for p, _ in ds.samples) == ["in.png", "link_in.png"]


def test_image_folder_errors(tmp_path, folder):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):  # a MissingDataError is also a FileNotFoundError
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "flat" / "x.png")
    with pytest.raises(DataError, match="no class folders"):
        ImageFolder(tmp_path / "flat")
    with pytest.raises(DataError, match="is a file"):
        ImageFolder(tmp_path / "flat" / "x.png")
    root, _ = folder
    (root / "empty").mkdir()
    (root / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"class folder .*empty holds no image files"):
        ImageFolder(root)
    with pytest.raises(ConfigError, match="extensions"):
        ImageFolder(root, extensions=("png",))
    with pytest.raises(ConfigError, match="channels"):
        ImageFolder(root, channels=2)
    with pytest.raises(ConfigError, match="transform"):
        ImageFolder(root, transform="ToTensor")


def test_image_folder_unreadable_file_named_when_read(folder):
    root, _ = folder
    (root / "dog" / "zz_broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    ds = ImageFolder(root)  # listing does not open files
    assert len(ds) == 4
    ds[2]
    with pytest.raises(DataError, match=r"Pillow cannot read .*zz_broken\.jpg"):
        ds[3]


def test_image_folder_dataloader_pipeline(folder):
    root, arrays = folder
    ds = ImageFolder(root, channels=3)
    batches = list(DataLoader(ds, batch_size=2))
    assert [tuple(x.shape) for x, _ in batches] == [(2, 3, 4, 5), (1, 3, 4, 5)]
    assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 1]
    assert torch.equal(batches[0][0][1], chw(arrays["cat/b.PNG"]))

    aug = Compose([ToTensor(channels=3), RandomCrop(4, padding=1), RandomHorizontalFlip(), Normalize(0.5, 0.25)])
    ds = ImageFolder(root, transform=aug)
    torch.manual_seed(3)
    first = torch.cat([x for x, _ in DataLoader(ds, batch_size=3)])
    torch.manual_seed(3)
    again = torch.cat([x for x, _ in DataLoader(ds, batch_size=3)])
    assert first.shape == (3, 3, 4, 4) and torch.equal(first, again)


# ---------------------------------------------------------------------------------------------------------------
# CIFAR binary
# ---------------------------------------------------------------------------------------------------------------


def write_cifar10(folder: Path, counts=(3, 2, 2, 1, 2), n_test=3, names=True):
    """CIFAR-10 binary files in ``folder``: returns {file name: (labels, pixels (n, 3072))}."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    files = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name, n in zip(files, list(counts) + [n_test]):
        labels = RNG.integers(0, 10, n, dtype=np.uint8)
        pixels = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        np.concatenate([labels[:, None], pixels], axis=1).tofile(folder / name)
        out[name] = (labels, pixels)
    if names:
        (folder / "batches.meta.txt").write_text("\n".join(f"class{k}" for k in range(10)) + "\n\n")
    return out


def write_cifar100(folder: Path, n_train=4, n_test=2):
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train.bin", n_train), ("test.bin", n_test)):
        coarse = RNG.integers(0, 20, n, dtype=np.uint8)
        fine = RNG.integers(0, 100, n, dtype=np.uint8)
        pixels = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        np.concatenate([coarse[:, None], fine[:, None], pixels], axis=1).tofile(folder / name)
        out[name] = (coarse, fine, pixels)
    return out


def as_image(pixels_row: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels_row.reshape(3, 32, 32).astype(np.float32) / 255.0)


def test_cifar10_round_trip_across_files(tmp_path):
    files = write_cifar10(tmp_path / "c10")
    ds = CIFARBinary(tmp_path / "c10")
    train = [files[f"data_batch_{i}.bin"] for i in range(1, 6)]
    labels = np.concatenate([lab for lab, _ in train])
    pixels = np.concatenate([pix for _, pix in train])
    assert len(ds) == 10 and ds.version == 10 and ds.num_classes == 10
    assert ds.targets.dtype == torch.int64 and ds.targets.tolist() == labels.tolist()
    assert ds.classes == [f"class{k}" for k in range(10)]
    for j in range(len(ds)):
        x, y = ds[j]
        assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
        assert torch.equal(x, as_image(pixels[j])) and y == labels[j]
    test = CIFARBinary(tmp_path / "c10", train=False)
    lab, pix = files["test_batch.bin"]
    assert len(test) == 3 and test.targets.tolist() == lab.tolist() and torch.equal(test[2][0], as_image(pix[2]))


def test_cifar_reads_through_memmap_and_pickles_small(tmp_path):
    write_cifar10(tmp_path / "c10", counts=(50, 50, 50, 50, 50))
    ds = CIFARBinary(tmp_path / "c10")
    assert ds._maps is None  # nothing mapped until an item is read
    x3 = ds[123][0]
    assert all(isinstance(m, np.memmap) and m.filename is not None for m in ds._maps)
    blob = pickle.dumps(ds)  # what a spawn DataLoader worker gets: file names and labels, never the pixels
    assert len(blob) < 20_000 < 250 * 3073
    clone = pickle.loads(blob)
    assert torch.equal(clone[123][0], x3) and torch.equal(clone.targets, ds.targets)


def test_cifar_transform_gets_uint8_hwc(tmp_path):
    files = write_cifar10(tmp_path / "c10")
    seen = []
    ds = CIFARBinary(tmp_path / "c10", transform=lambda a: seen.append((a.shape, a.dtype, a.flags.writeable)) or a)
    a, _ = ds[0]
    assert seen == [((32, 32, 3), np.uint8, True)]
    pix = files["data_batch_1.bin"][1][0]
    assert np.array_equal(a, pix.reshape(3, 32, 32).transpose(1, 2, 0))
    assert torch.equal(CIFARBinary(tmp_path / "c10", transform=ToTensor())[0][0], as_image(pix))


def test_cifar_archive_subfolders_and_cifar100(tmp_path):
    write_cifar10(tmp_path / "a" / "cifar-10-batches-bin", names=False)
    ds = CIFARBinary(tmp_path / "a")
    assert ds.folder == tmp_path / "a" / "cifar-10-batches-bin" and ds.classes == [str(k) for k in range(10)]

    files = write_cifar100(tmp_path / "b" / "cifar-100-binary")
    coarse, fine, pixels = files["train.bin"]
    ds = CIFARBinary(tmp_path / "b")
    assert ds.version == 100 and ds.num_classes == 100 and len(ds) == 4
    assert ds.targets.tolist() == fine.tolist()
    assert torch.equal(ds[3][0], as_image(pixels[3])) and ds[3][1] == fine[3]
    sup = CIFARBinary(tmp_path / "b", coarse=True)
    assert sup.num_classes == 20 and sup.targets.tolist() == coarse.tolist()
    test = CIFARBinary(tmp_path / "b", train=False, coarse=True)
    assert len(test) == 2 and test.targets.tolist() == files["test.bin"][0].tolist()


def test_cifar_errors(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"no CIFAR binary files in .*none.*data_batch_1\.bin .*test_batch\.bin.*"
                                        r"train\.bin and test\.bin"):
        CIFARBinary(tmp_path / "none")
    (tmp_path / "none" / "cifar-10-batches-py").mkdir()
    with pytest.raises(DatasetNotFoundError, match="pickled Python version"):
        CIFARBinary(tmp_path / "none")

    write_cifar10(tmp_path / "part")
    os.remove(tmp_path / "part" / "data_batch_5.bin")
    with pytest.raises(DataError, match=r"not data_batch_5\.bin, which its training split needs"):
        CIFARBinary(tmp_path / "part")
    assert len(CIFARBinary(tmp_path / "part", train=False)) == 3  # the test split is complete

    write_cifar10(tmp_path / "bad")
    with open(tmp_path / "bad" / "data_batch_3.bin", "ab") as f:
        f.write(b"\x00" * 10)
    with pytest.raises(DataError, match=r"data_batch_3\.bin has 6156 bytes, not a positive multiple of the 3073"):
        CIFARBinary(tmp_path / "bad")

    write_cifar100(tmp_path / "c100")
    with open(tmp_path / "c100" / "test.bin", "r+b") as f:
        f.write(bytes([0, 150]))  # fine label 150
    with pytest.raises(DataError, match=r"test\.bin record 0 has label 150"):
        CIFARBinary(tmp_path / "c100", train=False)

    with pytest.raises(ConfigError, match="coarse"):
        CIFARBinary(tmp_path / "part", train=False, coarse=True)
    write_cifar100(tmp_path / "both" / "cifar-100-binary")
    write_cifar10(tmp_path / "both" / "cifar-10-batches-bin")
    with pytest.raises(DataError, match="expected one data set"):
        CIFARBinary(tmp_path / "both")
    with pytest.raises(ConfigError, match="train"):
        CIFARBinary(tmp_path / "part", train="test")


def test_cifar_dataloader_batches(tmp_path):
    files = write_cifar10(tmp_path / "c10")
    ds = CIFARBinary(tmp_path / "c10")
    xs, ys = zip(*DataLoader(ds, batch_size=4))
    assert [tuple(x.shape) for x in xs] == [(4, 3, 32, 32), (4, 3, 32, 32), (2, 3, 32, 32)]
    assert torch.equal(torch.cat(ys), ds.targets)
    assert torch.equal(xs[0][3], as_image(files["data_batch_2.bin"][1][0]))
    # a worker process maps the files itself
    xw, yw = next(iter(DataLoader(ds, batch_size=10, num_workers=1, timeout=60)))
    assert torch.equal(xw, torch.cat(xs)) and torch.equal(yw, ds.targets)


# ---------------------------------------------------------------------------------------------------------------
# ArrayDataset
# ---------------------------------------------------------------------------------------------------------------


def test_array_dataset_npy_round_trip_and_memmap(tmp_path):
    X = RNG.random((6, 1, 3, 3)).astype(np.float32)
    y = np.array([0, 2, 1, 2, 0, 1], dtype=np.int64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    ds = ArrayDataset(tmp_path / "X.npy", str(tmp_path / "y.npy"))
    assert isinstance(ds._inputs, np.memmap)
    assert len(ds) == 6 and ds.num_classes == 3 and ds.targets.dtype == torch.int64 and ds.targets.tolist() == [
        0, 2, 1, 2, 0, 1]
    for i in range(6):
        x, label = ds[i]
        assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(X[i])) and label == y[i]
    blob = pickle.dumps(ds)
    assert len(blob) < X.nbytes + 2000 and pickle.loads(blob)._inputs is None
    assert torch.equal(pickle.loads(blob)[5][0], torch.from_numpy(X[5]))
    xs, ys = zip(*DataLoader(ds, batch_size=4))
    assert [tuple(x.shape) for x in xs] == [(4, 1, 3, 3), (2, 1, 3, 3)] and torch.cat(ys).tolist() == y.tolist()


def test_array_dataset_in_memory_dtypes_and_transform(tmp_path):
    X = RNG.integers(0, 256, (4, 2, 2), dtype=np.uint8)
    ds = ArrayDataset(X, torch.tensor([1, 0, 1, 0]), num_classes=5)
    assert torch.equal(ds[1][0], torch.from_numpy(X[1].astype(np.float32)))  # values as stored, not scaled
    assert ds.num_classes == 5 and ds.classes == ["0", "1", "2", "3", "4"]
    scaled = ArrayDataset(X, np.array([1, 0, 1, 0], dtype=np.uint8), transform=lambda x: x / 255)
    assert torch.allclose(scaled[0][0], torch.from_numpy(X[0] / 255).float())
    assert ArrayDataset(torch.ones(3, 2, dtype=torch.float64), [0, 1, 0])[2][0].dtype == torch.float32


def test_array_dataset_errors(tmp_path):
    X = np.zeros((6, 2), np.float32)
    with pytest.raises(DataError, match="inputs has 6 samples but labels has 5"):
        ArrayDataset(X, np.zeros(5, np.int64))
    with pytest.raises(DataError, match="integer class labels; got dtype float32"):
        ArrayDataset(X, np.zeros(6, np.float32))
    with pytest.raises(DataError, match="1-D"):
        ArrayDataset(X, np.zeros((6, 3), np.int64))
    with pytest.raises(DataError, match="must be >= 0"):
        ArrayDataset(X, np.array([0, 1, -1, 0, 0, 0]))
    with pytest.raises(DataTypeError, match="dtype object"):
        ArrayDataset(np.array([[1], ["a"]], dtype=object), [0, 1])
    np.save(tmp_path / "obj.npy", np.array([[1], ["a"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataTypeError, match=r"obj\.npy holds Python objects .*never unpickles"):
        ArrayDataset(tmp_path / "obj.npy", [0, 1])
    np.savez(tmp_path / "arch.npz", X=X)
    with pytest.raises(DataError, match=r"arch\.npz is a \.npz archive"):
        ArrayDataset(tmp_path / "arch.npz", np.zeros(6, np.int64))
    with pytest.raises(DataError, match=r"missing\.npy does not exist"):
        ArrayDataset(tmp_path / "missing.npy", np.zeros(6, np.int64))
    with pytest.raises(DataError, match="empty"):
        ArrayDataset(np.zeros((0, 2)), np.zeros(0, np.int64))
    with pytest.raises(ConfigError, match="num_classes"):
        ArrayDataset(X, np.arange(6), num_classes=3)
    with pytest.raises(DataError, match=r"shape \(N, \*features\)"):
        ArrayDataset(np.zeros(6), np.arange(6))


# ---------------------------------------------------------------------------------------------------------------
# find / cifar_root
# ---------------------------------------------------------------------------------------------------------------


def test_find_and_cifar_root(tmp_path, monkeypatch):
    monkeypatch.delenv("NETFIX_DATA", raising=False)
    assert data_home() == Path.home() / ".netfix" / "data"
    monkeypatch.setenv("NETFIX_DATA", str(tmp_path / "data"))
    assert data_home() == tmp_path / "data"

    with pytest.raises(MissingDataError) as e:
        cifar_root("cifar10")
    msg = str(e.value)
    for part in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin", str(tmp_path / "data" / "cifar10"),
                                                                 "cifar-10-binary.tar.gz", "never downloads"]:
        assert part in msg
    assert isinstance(e.value, DataError) and isinstance(e.value, FileNotFoundError)
    with pytest.raises(DataError, match=r"train\.bin, test\.bin in .*cifar100.*cifar-100-binary\.tar\.gz"):
        find("cifar100")

    write_cifar10(tmp_path / "data" / "cifar10" / "cifar-10-batches-bin")
    assert find("cifar10") == tmp_path / "data" / "cifar10" / "cifar-10-batches-bin"
    assert len(CIFARBinary(cifar_root("CIFAR-10"))) == 10
    write_cifar100(tmp_path / "data" / "cifar100")
    assert cifar_root("cifar100") == tmp_path / "data" / "cifar100"

    with pytest.raises(DataError, match=r"no data in .*my-photos"):
        find("my-photos")
    (tmp_path / "data" / "my-photos" / "cat").mkdir(parents=True)
    assert find("my-photos") == tmp_path / "data" / "my-photos"
    with pytest.raises(ConfigError, match="name"):
        find("../etc")
    with pytest.raises(UnknownNameError, match="'cifar10', 'cifar100'"):
        cifar_root("mnist")


# ---------------------------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------------------------


def test_to_tensor_inputs():
    rgb = RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    assert torch.equal(ToTensor()(rgb), chw(rgb)) and ToTensor()(rgb).shape == (3, 2, 3)
    assert torch.equal(ToTensor()(Image.fromarray(rgb)), chw(rgb))
    gray = RNG.integers(0, 256, (2, 3), dtype=np.uint8)
    assert torch.equal(ToTensor()(gray), chw(gray)) and ToTensor()(Image.fromarray(gray)).shape == (1, 2, 3)
    assert torch.equal(ToTensor(channels=3)(gray), chw(gray)[[0, 0, 0]])
    assert torch.equal(pil_to_tensor(Image.fromarray(rgb), channels=1),
                       chw(np.asarray(Image.fromarray(rgb).convert("L"))))
    assert ToTensor()(np.array([[65535]], dtype=np.uint16)).item() == 1.0
    assert ToTensor()(np.array([[True, False]])).tolist() == [[[1.0, 0.0]]]
    assert ToTensor()(np.full((1, 1), 0.25)).item() == 0.25
    with pytest.raises(DataTypeError, match="already a tensor"):
        ToTensor()(torch.zeros(3, 2, 2))
    with pytest.raises(DataTypeError, match="int32"):
        ToTensor()(np.zeros((2, 2), np.int32))
    with pytest.raises(DataError, match="one image at a time"):
        ToTensor()(np.zeros((2, 2, 2, 3), np.uint8))


def test_normalize():
    x = torch.rand(3, 4, 4)
    before = x.clone()
    out = Normalize((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))(x)
    expect = (x - torch.tensor([0.1, 0.2, 0.3]).reshape(3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).reshape(3, 1, 1)
    assert torch.equal(out, expect) and torch.equal(x, before)
    assert torch.equal(Normalize(0.5, 0.5)(x), (x - 0.5) / 0.5)
    assert Normalize([0.0] * 3, [1.0] * 3)(torch.zeros(2, 3, 1, 1)).shape == (2, 3, 1, 1)  # a batch
    with pytest.raises(DataError, match="3 channel.* but mean has 2 values"):
        Normalize((0.1, 0.2), 1.0)(x)
    with pytest.raises(ConfigError, match=r"Normalize\(std=...\): every std must be > 0"):
        Normalize(0.0, (1.0, 0.0))
    with pytest.raises(ConfigError, match=r"Normalize\(mean=...\)"):
        Normalize("abc", 1.0)
    with pytest.raises(DataTypeError, match="ToTensor"):
        Normalize(0.0, 1.0)(torch.zeros(1, 2, 2, dtype=torch.uint8))


def test_random_crop():
    x = torch.arange(1, 1 + 2 * 5 * 6, dtype=torch.float32).reshape(2, 5, 6)
    padded = RandomCrop((9, 10), padding=2)(x)  # the whole padded image: zeros around x
    assert torch.equal(padded[:, 2:7, 2:8], x) and padded.sum() == x.sum()
    g = torch.Generator().manual_seed(0)
    crops = [RandomCrop(3, padding=1, generator=g)(x) for _ in range(40)]
    assert all(c.shape == (2, 3, 3) for c in crops)
    full = torch.nn.functional.pad(x, (1, 1, 1, 1))
    windows = {(t, left) for t in range(5) for left in range(6)
               if any(torch.equal(c, full[:, t:t + 3, left:left + 3]) for c in crops)}
    assert len(windows) > 10  # the offsets vary, and every crop is a window of the padded image
    again = [RandomCrop(3, padding=1, generator=torch.Generator().manual_seed(0))(x) for _ in range(1)]
    assert torch.equal(again[0], crops[0])
    torch.manual_seed(7)
    a = RandomCrop(4)(x)
    torch.manual_seed(7)
    assert torch.equal(RandomCrop(4)(x), a)
    with pytest.raises(DataError, match="larger than the image"):
        RandomCrop(7)(x)
    for bad in (0, -3, (3,), "3", 2.5, True):
        with pytest.raises(ConfigError, match=r"RandomCrop\(size=...\)"):
            RandomCrop(bad)
    with pytest.raises(ConfigError, match=r"RandomCrop\(padding=...\)"):
        RandomCrop(3, padding=-1)
    with pytest.raises(ConfigError, match="generator"):
        RandomCrop(3, generator=0)
    with pytest.raises(DataError, match="C x H x W"):
        RandomCrop(3)(torch.zeros(5, 5))


def test_random_horizontal_flip():
    x = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x), x.flip(-1))
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x), x)
    g = torch.Generator().manual_seed(1)
    flips = [bool(torch.equal(RandomHorizontalFlip(generator=g)(x), x.flip(-1))) for _ in range(200)]
    assert 60 < sum(flips) < 140
    g2 = torch.Generator().manual_seed(1)
    assert flips == [bool(torch.equal(RandomHorizontalFlip(generator=g2)(x), x.flip(-1))) for _ in range(200)]
    torch.manual_seed(5)
    seq = [RandomHorizontalFlip()(x) for _ in range(10)]
    torch.manual_seed(5)
    assert all(torch.equal(a, RandomHorizontalFlip()(x)) for a in seq)
    for bad in (1.5, -0.1, "0.5", None):
        with pytest.raises(ConfigError, match=r"RandomHorizontalFlip\(p=...\)"):
            RandomHorizontalFlip(p=bad)


def test_compose():
    pipe = Compose([ToTensor(), Normalize(0.5, 0.5), RandomHorizontalFlip(p=1.0)])
    a = np.array([[0, 255, 51]], dtype=np.uint8)
    assert torch.allclose(pipe(a), torch.tensor([[[-0.6, 1.0, -1.0]]]))
    assert "Normalize" in repr(pipe)
    with pytest.raises(ConfigError, match=r"item 0 is the class ToTensor.*ToTensor\(...\)"):
        Compose([ToTensor])
    with pytest.raises(ConfigError, match="item 1 .* is not callable"):
        Compose([ToTensor(), 3])
    with pytest.raises(ConfigError, match="list of callables"):
        Compose(ToTensor())
