"""The C++ / CUDA sources of the ``jt.code`` kernels (``unidetector/ops/kernels/``) compile as they
are and as Jittor gets them, and each ops module runs its own files.

* every ``.h`` / ``.cc`` file compiles alone with ``g++ -fsyntax-only -Wall -Wextra -Werror``
  (its example settings), every ``.cu`` file with ``nvcc`` where there is one;
* the ``jt.code`` arguments each module builds (settings as ``#define`` lines + the source as
  header, a one-line call as src) compile inside a translation unit laid out as Jittor's
  generated code-op file: its type names and defines, the header, then ``jit_run`` declaring
  ``in0_p``, ``in0_shape0``, ... ``out0_p`` with the types and ranks of the real inputs.

Running the kernels (and their numbers) is tested in test_ops.py, test_layers.py and the goldens.
"""
import importlib
import shutil
import subprocess

import pytest

import unidetector  # noqa: F401  (runtime bootstrap before jittor)
from unidetector.ops import activation, batch_norm, block_pool, bmm, kernel_source, onednn

# the modules (the package exports functions of the same names)
nms, roi_align = (importlib.import_module(f"unidetector.ops.{name}") for name in ("nms", "roi_align"))

KERNELS = kernel_source.KERNEL_DIR
GXX = shutil.which("g++")
NVCC = shutil.which("nvcc")
needs_gxx = pytest.mark.skipif(GXX is None, reason="no g++ on PATH")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="no nvcc on PATH")

F, I = "float32", "int32"


def _roi_align_io(num_levels):
    """(forward inputs, forward outputs, backward inputs, backward outputs) as (dtype, rank) lists."""
    fwd_in = [(F, 4)] * num_levels + [(F, 2), (I, 1)]
    return fwd_in, [(F, 4)], fwd_in + [(F, 4)], [(F, 4)] * num_levels


def kernel_cases():
    """(id, source file stem, KernelCode, inputs, outputs) for every kernel, over settings that change the text."""
    cases = []
    for ta, tb in ((0, 0), (0, 1), (1, 0)):
        cases.append((f"bmm-{ta}{tb}", "bmm", bmm.kernel_code(bool(ta), bool(tb)), [(F, 3), (F, 3)], [(F, 3)]))
    for layout in (False, True):
        bn, name = batch_norm.kernel_code(1e-5, layout), "batch_norm" + "-nhwc" * layout
        cases.append((f"{name}-forward", "batch_norm", bn["forward"], [(F, 4), (F, 1), (F, 1)],
                      [(F, 4), (F, 1), (F, 1)]))
        cases.append((f"{name}-backward", "batch_norm", bn["backward"], [(F, 4), (F, 4), (F, 1), (F, 1), (F, 1)],
                      [(F, 4), (F, 1), (F, 1)]))
        affine, name = batch_norm.affine_kernel_code(layout), "channel_affine" + "-nhwc" * layout
        cases.append((f"{name}-forward", "batch_norm", affine["forward"], [(F, 4), (F, 1), (F, 1)], [(F, 4)]))
        cases.append((f"{name}-backward", "batch_norm", affine["backward"], [(F, 4), (F, 4), (F, 1)],
                      [(F, 4), (F, 1), (F, 1)]))
        for direction, code in block_pool.kernel_code(2, layout).items():
            cases.append((f"block_pool{'-nhwc' * layout}-{direction}", "block_pool", code, [(F, 4)], [(F, 4)]))
    roi_settings = (([1 / 4], (7, 7), 0, True), ([1 / 4, 1 / 8, 1 / 16, 1 / 32], (14, 5), 2, False))
    for scales, size, ratio, aligned in roi_settings:
        fwd_in, fwd_out, bwd_in, bwd_out = _roi_align_io(len(scales))
        code = roi_align._kernel_code(scales, size, ratio, aligned)
        cases.append((f"roi_align-L{len(scales)}-forward", "roi_align", code["forward"], fwd_in, fwd_out))
        cases.append((f"roi_align-L{len(scales)}-backward", "roi_align", code["backward"], bwd_in, bwd_out))
    for method, offset in (("hard", 0), ("gaussian", 1), ("linear", 0), ("naive", 0)):
        cases.append((f"nms-{method}", "nms", nms.nms_kernel_code(method, 0.5, 0.5, 1e-3, offset),
                      [(F, 2), (F, 1), (I, 1), (F, 1), (I, 1)], [(F, 1), (I, 1), (F, 2), (I, 1)]))
    for name, code in activation.kernel_code().items():
        cases.append((f"activation-{name}", "activation", code, [(F, 1)] * (1 if name == "relu" else 2), [(F, 1)]))
    for affine, residual in ((False, False), (True, True)):
        cases.append((f"onednn-conv-{int(affine)}{int(residual)}", "onednn",
                      onednn.conv_kernel_code("float32", affine, residual, True, (2, 2), (1, 1)),
                      [(F, 4), (F, 4)] + [(F, 1)] * (2 * affine) + [(F, 4)] * residual, [(F, 4)]))
    cases.append(("onednn-pool", "onednn", onednn.pool_kernel_code("float32", 2), [(F, 4)], [(F, 4)]))
    for direction, code in onednn.conv_train_kernel_code((2, 2), (1, 1)).items():
        cases.append((f"onednn-conv-train-{direction}", "onednn", code, [(F, 4), (F, 4)], [(F, 4)]))
    for to_last in (True, False):
        cases.append((f"onednn-layout-{int(to_last)}", "onednn", onednn.layout_kernel_code("float32", to_last),
                      [(F, 4)], [(F, 4)]))
    cases.append(("lexsort", "nms_sort", nms.LEXSORT_CODE, [(I, 1), (F, 1), (I, 1)], [(I, 1)]))
    cases.append(("group_by_class", "nms_sort", nms.GROUP_CODE, [(I, 1)], [(I, 1), (I, 1)]))
    return cases


CASES = kernel_cases()
CUDA_CASES = [case for case in CASES if case[2].cuda_src]


def jit_unit(header: str, src: str, inputs, outputs) -> str:
    """A translation unit laid out as Jittor's generated code-op file (``jittor/src/ops/code_op.cc``,
    ``OpCompiler::get_jit_src``): its type names, the header with Jittor's key defines inserted after
    the last ``#include`` (among them ``code``, the op's name, defined empty), then ``jit_run``."""
    params = []
    for prefix, specs in (("in", inputs), ("out", outputs)):
        for i, (dtype, rank) in enumerate(specs):
            params.append(f"{dtype}* __restrict__ {prefix}{i}_p")
            params += [f"index_t {prefix}{i}_shape{d}" for d in range(rank)]
    text = (f"typedef float float32;\ntypedef int int32;\n{header}\n"
            f"namespace jittor {{\nvoid jit_run({', '.join(params)}) {{\n{src}\n}}\n}}\n")
    last = text.rfind("#include")
    at = 0 if last < 0 else text.index("\n", last) + 1
    return text[:at] + "#define code \n#define index_t int32\n" + text[at:]


def compile_ok(cmd, path, text=None):
    """Run a compiler on ``path`` (written with ``text`` first when given); fail with its messages."""
    if text is not None:
        path.write_text(text)
    run = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{' '.join(cmd)} {path} failed:\n{run.stdout}{run.stderr}"


GXX_CHECK = ["g++", "-std=c++14", "-x", "c++", "-fsyntax-only", "-fopenmp", "-Wall", "-Wextra", "-Werror"]
NVCC_CHECK = ["nvcc", "-std=c++17", "-x", "cu", "-c", "-o", "/dev/null"]


def test_kernel_folder_holds_the_sources():
    names = sorted(p.name for p in KERNELS.iterdir())
    assert {"bmm.cc", "batch_norm.cc", "roi_align.cc", "roi_align.cu", "nms.cc", "nms.cu"} <= set(names), names
    for name in names:
        assert name.endswith((".h", ".cc", ".cu")), f"{KERNELS / name}: not a kernel source"
        kernel_source.read(name)  # ASCII: Jittor puts the text in its kernel key


@needs_gxx
@pytest.mark.parametrize("name", sorted(p.name for p in KERNELS.iterdir() if p.suffix in (".h", ".cc")))
def test_source_file_compiles_alone(name):
    compile_ok(GXX_CHECK, KERNELS / name)


@needs_nvcc
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in KERNELS.glob("*.cu")))
def test_cuda_file_compiles_alone(name):
    compile_ok(NVCC_CHECK, KERNELS / name)


@needs_gxx
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_jt_code_cpu_sources_compile(case, tmp_path):
    name, _, code, inputs, outputs = case
    compile_ok(GXX_CHECK + ["-Wno-unused-parameter"], tmp_path / f"{name}.cc", jit_unit(code.cpu_header, code.cpu_src, inputs, outputs))


@needs_gxx
def test_harness_rejects_a_call_that_does_not_fit(tmp_path):
    """The check is not vacuous: a src whose call misses an argument, or a kernel reading an input
    the op does not have, fails to compile."""
    name, _, code, inputs, outputs = CASES[0]
    for src in (code.cpu_src.replace(", in0_shape2);", ");"), code.cpu_src.replace("in1_p", "in2_p")):
        path = tmp_path / "bad.cc"
        path.write_text(jit_unit(code.cpu_header, src, inputs, outputs))
        run = subprocess.run([*GXX_CHECK, str(path)], capture_output=True, text=True, timeout=600)
        assert run.returncode != 0 and "error" in run.stderr, f"{name}: {src!r} compiled"


@needs_nvcc
@pytest.mark.slow
@pytest.mark.parametrize("case", CUDA_CASES, ids=[c[0] for c in CUDA_CASES])
def test_jt_code_cuda_sources_compile(case, tmp_path):
    name, _, code, inputs, outputs = case
    compile_ok(NVCC_CHECK, tmp_path / f"{name}.cu", jit_unit(code.cuda_header, code.cuda_src, inputs, outputs))


def test_each_module_runs_its_own_files():
    """Each module's jt.code headers are its kernel files (includes inlined) behind its #define lines,
    and every file in the folder is used by some module."""
    used = set()
    for name, stem, code, _, _ in CASES:
        for header, ext in ((code.cpu_header, ".cc"), (code.cuda_header, ".cu")):
            if not header:
                continue
            assert header.endswith(kernel_source.load(stem + ext)), f"{name}: its header is not kernels/{stem}{ext}"
            prelude = header[:-len(kernel_source.load(stem + ext))]
            assert all(line.startswith("#define ") for line in prelude.splitlines()), f"{name}: {prelude}"
            assert '#include "' not in header, f"{name}: a quoted include is left for Jittor"
            used |= set(kernel_source.files(stem + ext))
    unused = sorted({p.name for p in KERNELS.iterdir()} - used)
    assert not unused, f"kernel files no module runs: {unused}"


def test_settings_are_macros_in_front_of_the_source():
    code = roi_align._kernel_code([0.25, 0.125], (7, 5), 2, False)["forward"]
    for line in ("#define ROI_ALIGN_LEVELS 2", "#define ROI_ALIGN_PH 7", "#define ROI_ALIGN_PW 5",
                 "#define ROI_ALIGN_SAMPLING_RATIO 2", "#define ROI_ALIGN_ALIGNED false"):
        assert line + "\n" in code.cpu_header and line + "\n" in code.cuda_header, line
    assert "(float)0.125" in code.cpu_src and "in2_p, in3_p" in code.cpu_src  # rois and levels after 2 maps
    assert "#define BATCH_NORM_EPS 0.001\n" in batch_norm.kernel_code(1e-3)["forward"].cpu_header
    assert "#define NMS_OFFSET 1.f\n" in nms.nms_kernel_code("linear", 0.3, offset=1).cpu_header


def test_load_inlines_each_include_once(tmp_path, monkeypatch):
    (tmp_path / "a.h").write_text('#include "b.h"\nint a;\n')
    (tmp_path / "b.h").write_text("int b;\n")
    (tmp_path / "main.cc").write_text('#include "a.h"\n#include "b.h"\n#include <vector>\nint m;\n')
    monkeypatch.setattr(kernel_source, "KERNEL_DIR", tmp_path)
    text = kernel_source.load("main.cc")
    assert text.count("int b;") == 1 and text.index("int b;") < text.index("int a;") < text.index("int m;"), text
    assert '#include "' not in text and "#include <vector>" in text, text
    assert kernel_source.files("main.cc") == ["main.cc", "a.h", "b.h"]
    with pytest.raises(kernel_source.KernelSourceError, match="missing.cc"):
        kernel_source.load("missing.cc")
    with pytest.raises(ValueError, match="upper-case"):
        kernel_source.defines({"lower": 1})
