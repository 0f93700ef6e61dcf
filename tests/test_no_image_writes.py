"""No module of the device package may call an image- or video-writing API.

Frames and face crops live only in memory for the duration of inference; this scan keeps
a debug dump from creeping in. It reads the source with ``ast``, so comments and strings
do not count, and it also checks itself on a snippet that must be caught.
"""

import ast
from pathlib import Path

DEVICE = Path(__file__).resolve().parent.parent / "device"

# Calls that write pictures, video or raw arrays: OpenCV, Pillow, imageio, scikit-image,
# matplotlib, numpy, PyAV output containers.
WRITING_CALLS = {
    "imwrite", "imwritemulti", "VideoWriter", "VideoWriter_fourcc", "save", "imsave", "mimwrite",
    "mimsave", "volwrite", "savez", "savez_compressed", "tofile", "savefig", "save_image",
    "write_video", "write_png", "dump",
}


def writing_calls(source: str, filename: str = "<snippet>") -> list[str]:
    """``file:line name`` for every call of a writing API, and every PyAV/open in write mode."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in WRITING_CALLS:
            found.append(f"{filename}:{node.lineno} {name}")
            continue
        # av.open(path, "w") / av.open(path, mode="w"): an output container
        if name == "open" and isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "av":
            modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "mode"]
            if any(isinstance(m, ast.Constant) and "w" in str(m.value) for m in modes):
                found.append(f"{filename}:{node.lineno} av.open(w)")
    return found


def test_scanner_catches_the_usual_suspects():
    snippet = (
        "import cv2, numpy as np, av\n"
        "cv2.imwrite('f.jpg', frame)\n"
        "w = cv2.VideoWriter('o.mp4', 0, 2, (640, 480))\n"
        "Image.fromarray(rgb).save('crop.png')\n"
        "np.save('frame.npy', rgb)\n"
        "out = av.open('clip.mp4', mode='w')\n"
        "rgb.tofile('raw.bin')\n"
    )
    assert [hit.split()[1] for hit in writing_calls(snippet)] == [
        "imwrite", "VideoWriter", "save", "save", "av.open(w)", "tofile"]


def test_device_package_writes_no_images():
    modules = sorted(DEVICE.rglob("*.py"))
    assert len(modules) >= 10
    hits = [hit for path in modules for hit in writing_calls(path.read_text(), str(path.relative_to(DEVICE.parent)))]
    assert hits == []
