"""Compiles every kernel of kernels/ to PTX with NVRTC (PyPI nvidia-cuda-nvrtc-cu12): no GPU
and no CUDA toolkit needed. Exits non-zero on any compile error, printing NVRTC's log.

    python kernels/compile_ptx.py [--arch sm_80 --arch sm_90] [--out DIR]

The program is what the CUDA backend builds at start (vecstream_kernels::program_source):
kernels/portable.h, then for each precision (precision_f32.h, precision_f16.h) its prelude
followed by every kernels/*.k, compiled once per architecture.
"""

import argparse
import ctypes
import os
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
# Every kernel file (they do not depend on each other, so their order is free); the entry
# points are what the sources declare: VS_KERNEL void VS_NAME(name)(), once per precision.
SOURCES = sorted(p.name for p in HERE.glob("*.k"))
PRECISIONS = {"precision_f32.h": "", "precision_f16.h": "_f16"}
ENTRY_POINTS = [m.group(1) + suffix for suffix in PRECISIONS.values() for name in SOURCES
                for m in re.finditer(r"VS_KERNEL void VS_NAME\((\w+)\)\(",
                                     (HERE / name).read_text())]


def load_nvrtc():
    import nvidia.cuda_nvrtc  # the PyPI wheel

    lib_dir = pathlib.Path(list(nvidia.cuda_nvrtc.__path__)[0]) / "lib"
    for name in ("libnvrtc.so.12", "libnvrtc.so"):
        path = lib_dir / name
        if path.exists():
            return ctypes.CDLL(str(path)), lib_dir
    sys.exit(f"no libnvrtc in {lib_dir}")


def program_source():
    src = (HERE / "portable.h").read_text()
    for prelude in PRECISIONS:
        src += f'\n#line 1 "{prelude}"\n' + (HERE / prelude).read_text()
        for name in SOURCES:
            src += f'\n#line 1 "{name}"\n' + (HERE / name).read_text()
    return src


def check(nvrtc, result, what):
    if result != 0:
        nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
        sys.exit(f"{what}: {nvrtc.nvrtcGetErrorString(result).decode()}")


def compile_ptx(nvrtc, source, arch):
    prog = ctypes.c_void_p()
    check(nvrtc, nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"vecstream_kernels.cu",
                                          0, None, None), "nvrtcCreateProgram")
    opts = [f"--gpu-architecture=compute_{arch.removeprefix('sm_')}".encode(), b"--std=c++17",
            b"-default-device"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    result = nvrtc.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    if result != 0:
        sys.exit(f"NVRTC failed for {arch}:\n{log.value.decode(errors='replace')}")
    nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    check(nvrtc, nvrtc.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    return ptx.value.decode(), log.value.decode(errors="replace").strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="sm_80, sm_90 (default: both)")
    ap.add_argument("--out", default=os.environ.get("VECSTREAM_PTX_DIR", str(HERE / "ptx")))
    args = ap.parse_args()
    archs = args.arch or ["sm_80", "sm_90"]
    nvrtc, _ = load_nvrtc()
    version = (ctypes.c_int(), ctypes.c_int())
    nvrtc.nvrtcVersion(ctypes.byref(version[0]), ctypes.byref(version[1]))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = program_source()
    for arch in archs:
        ptx, log = compile_ptx(nvrtc, source, arch)
        missing = [e for e in ENTRY_POINTS if f".entry {e}(" not in ptx]
        if missing:
            sys.exit(f"{arch}: PTX lacks entry points {missing}")
        path = out / f"vecstream_kernels.{arch}.ptx"
        path.write_text(ptx)
        note = f" (log: {log})" if log else ""
        print(f"{arch}: {len(ENTRY_POINTS)} kernels, {len(ptx)} bytes of PTX -> {path}"
              f" [NVRTC {version[0].value}.{version[1].value}]{note}")


if __name__ == "__main__":
    main()
