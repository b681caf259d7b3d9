"""A hostile corpus, made by the tests themselves: pipes and devices named like images, links
that lead nowhere, names that are not UTF-8 or that a spreadsheet would run, formats we do
not read, decompression bombs, and models that answer nonsense."""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
from conftest import ROOT, random_rgb, write_image

MEMORY_CAP = 4 * 2**30  # every CLI run here gets this address-space cap: a regression fails, it never eats the machine
FORMULA_NAMES = ("=1+2.png", "@SUM(1).png", "+cmd.png", "-x.png", "\tt.png", "\rr.png")
NON_UTF8_FILE = os.fsdecode(b"caf\xe9.png")
NON_UTF8_DIR = os.fsdecode(b"d\xffir")


def capped():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cli(*args, timeout=120, env=None, wrap=(), preexec=None, stdout=subprocess.PIPE, cwd=ROOT):
    """Run `slidetally-cli` (as `python -m desktop.cli`) in a subprocess with a memory cap."""
    def setup():
        capped()
        if preexec:
            preexec()
    return subprocess.run([*wrap, sys.executable, "-m", "desktop.cli", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, timeout=timeout, cwd=cwd, env=env, preexec_fn=setup,
                          errors="backslashreplace", text=True)


def run_measured(args, tmp: Path, timeout=300, env=None):
    """Run the CLI through a small parent that reports the CLI's own peak RSS (MB)."""
    report = tmp / "peak-rss-kb"
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[2:])\n"
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
            "sys.exit(r.returncode)\n")
    out = subprocess.run([sys.executable, "-c", code, str(report), sys.executable, "-m", "desktop.cli", *map(str, args)],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, preexec_fn=capped)
    return out, int(report.read_text()) / 1024


def png(path: Path, seed: int = 0) -> Path:
    return write_image(path, random_rgb(seed, (24, 24)))


def make_hostile_folder(root: Path) -> tuple[Path, dict[str, str]]:
    """A folder of everything that must not hang, crash or vanish, and what each item's row must say."""
    folder = root / "hostile"
    folder.mkdir()
    for i in range(4):
        png(folder / f"good_{i}.png", i)
    expect: dict[str, str] = {}
    os.mkfifo(folder / "x.jpg")
    expect["x.jpg"] = "not a regular file"
    os.symlink("/dev/zero", folder / "z.jpg")
    expect["z.jpg"] = "not a regular file"
    os.symlink(folder / "gone.png", folder / "dangling.jpg")
    expect["dangling.jpg"] = "broken link"
    os.symlink(folder / "loop.jpg", folder / "loop.jpg")
    expect["loop.jpg"] = "broken link"
    (root / "elsewhere").mkdir()
    os.symlink(root / "elsewhere", folder / "linkdir")
    expect["linkdir/"] = "link to a folder"
    (folder / "anim.gif").write_bytes(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
                                      b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
    expect["anim.gif"] = "unsupported format: GIF"
    # a real 1x1 lossless WebP, as bytes: the bundle's OpenCV has no WebP encoder to make one
    (folder / "pic.webp").write_bytes(b'RIFF\x1e\x00\x00\x00WEBPVP8L\x11\x00\x00\x00/\x00\x00\x00\x00\x07P\xad"\x17\xa5\xff'
                                      b"\x81\x88\xe8\x7f\x00\x00")
    expect["pic.webp"] = "unsupported format: WebP"
    (folder / "notes.txt").write_text("analyser log")
    expect["notes.txt"] = "not an image"
    (folder / ".hidden.png").write_bytes(b"hidden: the one thing left out silently")
    for i, name in enumerate(FORMULA_NAMES):
        png(folder / name, 10 + i)
    png(folder / NON_UTF8_FILE, 20)
    (folder / NON_UTF8_DIR).mkdir()
    png(folder / NON_UTF8_DIR / "cell.png", 21)
    deep = make_deep_path(folder, 4200)
    expect[deep] = "path too long"
    return folder, expect


def make_deep_path(folder: Path, length: int) -> str:
    """Nested folders whose full path is over `length` characters, with an image at the bottom;
    returns the relative path of the first item that cannot be reached by its path."""
    fd = os.open(folder, os.O_RDONLY)
    parts: list[str] = []
    try:
        while len(str(folder)) + sum(len(p) + 1 for p in parts) < length:
            name = f"d{len(parts):02d}" + "x" * 200
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
            parts.append(name)
        data = cv2.imencode(".png", random_rgb(30, (24, 24)))[1].tobytes()
        out = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, data)
        os.close(out)
    finally:
        os.close(fd)
    # the first folder whose own path is past PATH_MAX (4096) is the one that cannot be listed
    for i in range(len(parts)):
        if len(str(folder)) + sum(len(p) + 1 for p in parts[:i + 1]) >= 4096:
            return "/".join(parts[:i + 1]) + "/"
    return "/".join(parts) + "/deep.png"


# --- decompression bombs: tiny files whose headers promise gigabytes ---------------------------

def _patch_jpeg_size(data: bytes, width: int, height: int, stray: bool) -> bytes:
    pos = 2
    while True:
        marker = data[pos + 1]
        if marker in (0xC0, 0xC2):
            out = bytearray(data)
            out[pos + 5:pos + 7], out[pos + 7:pos + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
            return bytes(out[:pos] + b"\x00" + out[pos:]) if stray else bytes(out)  # one stray byte before the frame
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")


def jpeg_bomb(path: Path, size: int, progressive: bool = False, stray: bool = True) -> Path:
    ok, data = cv2.imencode(".jpg", np.full((16, 16, 3), 200, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    path.write_bytes(_patch_jpeg_size(data.tobytes(), size, size, stray))
    return path


def tiff_bomb(path: Path, size: int) -> Path:
    """A small TIFF whose first directory claims size x size pixels in one strip."""
    ok, data = cv2.imencode(".tiff", np.full((16, 16, 3), 200, np.uint8))
    out = bytearray(data.tobytes())
    ifd = struct.unpack_from("<I", out, 4)[0]
    for k in range(struct.unpack_from("<H", out, ifd)[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from("<HH", out, entry)
        if tag in (256, 257, 278):
            struct.pack_into("<H" if kind == 3 else "<I", out, entry + 8, size)
    path.write_bytes(bytes(out))
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int, height: int, depth: int = 8, colour: int = 2) -> Path:
    """A real PNG of zeros: every row decodes, so a decoder that takes it fills all its memory."""
    channels = {0: 1, 2: 3, 6: 4}[colour]
    row = b"\x00" * (1 + width * channels * depth // 8)
    squeeze = zlib.compressobj(9)
    body = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
                     + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
    return path


def bmp_bomb(path: Path, size: int) -> Path:
    header = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, size, size, 1, 24, 0, 0, 0, 0, 0, 0)
    path.write_bytes(header + b"\x00" * 64)
    return path


def make_bomb_folder(root: Path) -> tuple[Path, list[str], list[str]]:
    """Bombs that must be refused, and large-but-allowed images that must not be decoded all at once."""
    folder = root / "bombs"
    folder.mkdir()
    refused = [
        jpeg_bomb(folder / "stray_baseline.jpg", 30000).name,  # 632 bytes
        jpeg_bomb(folder / "stray_progressive.jpg", 30000, progressive=True).name,
        tiff_bomb(folder / "tiff_bomb.tif", 30000).name,
        bmp_bomb(folder / "bmp_bomb.bmp", 30000).name,
        png_bomb(folder / "png_bomb.png", 9000, 9000).name,  # 81 M pixels
        png_bomb(folder / "deep16.png", 6000, 6000, depth=16, colour=6).name,  # 36 M pixels, but 288 MB decoded
    ]
    allowed = [jpeg_bomb(folder / "large_0.jpg", 7000, stray=False).name,  # 49 M pixels: allowed, decoded one at a time
               jpeg_bomb(folder / "large_1.jpg", 7000, progressive=True, stray=False).name,
               png_bomb(folder / "large_2.png", 7000, 7000).name]
    allowed += [png(folder / f"cell_{i}.png", i).name for i in range(4)]
    return folder, refused, allowed


# --- models that answer nonsense -----------------------------------------------------------------

def make_bad_model(path: Path, kind: str) -> Path:
    """A contract-shaped tiny model whose 'probabilities' are NaN, rank 0, or not a distribution."""
    import onnx
    from conftest import make_tiny_model
    from onnx import TensorProto, helper

    make_tiny_model(path)
    model = onnx.load(path)
    graph = model.graph
    out = next(o for o in graph.output if o.name == "probabilities")
    softmax = next(n for n in graph.node if n.output[0] == "probabilities")
    if kind == "nan":
        softmax.output[0] = "p0"
        graph.initializer.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
        graph.node.extend([helper.make_node("Div", ["zero", "zero"], ["nan"]),
                           helper.make_node("Add", ["p0", "nan"], ["probabilities"])])
    elif kind == "rank0":
        softmax.output[0] = "p0"
        graph.node.append(helper.make_node("ReduceSum", ["p0"], ["probabilities"], keepdims=0))
        out.type.tensor_type.shape.ClearField("dim")
    elif kind == "logits":
        graph.node.remove(softmax)
        next(n for n in graph.node if n.output[0] == "logits").output[0] = "probabilities"
    onnx.save(model, path)
    return path
