"""The ``unidet serve`` page: a Gradio ``Blocks`` app over :class:`~unidetector.app.core.DetectionService`.

Left: the image (upload, or click an example), the vocabulary (typed class names or a built-in list),
the score-threshold slider, the max-detections box and the Detect button. Right: a message line
(refused uploads, bad class lists), the timing line (network pass and re-scoring, or "re-scored the
cached regions: no network pass"), the annotated image, the table (class, score, box) and the
COCO-style JSON download. Changing the threshold, the max detections or the classes
(Enter) or the vocabulary re-runs the request: the detector re-scores its cached regions.

Element ids (for tests and styling): ``upload``, ``examples``, ``vocabulary``, ``classes``,
``threshold``, ``max-dets``, ``detect``, ``message``, ``timing``, ``annotated``, ``table``, ``json``.
"""
import html
import re
import sys
import traceback

from ..errors import UnidetError
from .core import TABLE_HEADERS, TYPED, InputRejected, read_upload

UPLOAD_TYPES = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"]
CONCURRENCY_ID = "detector"
CSS = "#message p { color: #b42318; font-weight: 600; } #timing p { color: #475467; }"


def escape(text: str) -> str:
    """``text`` shown literally in Markdown (user-derived strings: file and class names)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~>])", r"\\\1", html.escape(str(text), quote=False))


def build_demo(service, menu, examples=(), initial_classes: str = "", score_thr: float = 0.3,
               max_dets: int = 100, model_note: str = ""):
    """The ``gr.Blocks`` page (not launched). ``examples``: image paths shown as clickable thumbnails."""
    import gradio as gr
    from gradio.utils import get_upload_folder

    limits = service.limits
    examples = [str(p) for p in examples]
    roots = [get_upload_folder(), *examples]

    def outputs_for_error(err):
        return f"**{escape(err)}**", "", None, [], None

    def request(path, label, typed, thr, maxd):
        """The Detect button: message, timing, annotated image, table rows, JSON path."""
        try:
            rgb, name = read_upload(path, limits, roots)
            names, builtin = menu.names(label, typed, limits)
            res = service.detect(rgb, name, names, builtin, thr, maxd)
        except UnidetError as e:               # refused input, bad vocabulary, detector errors
            return outputs_for_error(e)
        except Exception:  # noqa: BLE001 - never a traceback on the page; the server log has it
            traceback.print_exc(file=sys.stderr)
            return outputs_for_error("internal error while detecting (the server log has the details)")
        return "", res.timing, res.annotated, res.rows, res.json_path

    def rescore(path, label, typed, thr, maxd):
        """Threshold, max detections, classes or vocabulary changed: the same request, if an image is there."""
        if not path:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return request(path, label, typed, thr, maxd)

    def preview(path):
        """A new upload: show it (or say why it is refused) and clear the previous results."""
        if not path:
            return "", "", None, [], None
        try:
            rgb, name = read_upload(path, limits, roots)
        except InputRejected as e:
            return outputs_for_error(e)
        return "", f"{escape(name)}: {rgb.shape[1]}x{rgb.shape[0]} pixels; press Detect.", rgb, [], None

    with gr.Blocks(title="UniDetector: detect anything", analytics_enabled=False,
                   delete_cache=(600, 3600)) as demo:
        gr.Markdown("## UniDetector: detect anything\nUpload an image, name the classes to find, press **Detect**. "
                    "Changing only the classes or the threshold re-scores the image's cached regions (no network "
                    f"pass).{' ' + model_note if model_note else ''}")
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.File(label=f"Image (JPEG, PNG, BMP, TIFF, WebP; up to {limits.max_bytes / 2 ** 20:g} MB "
                                 f"and {limits.max_pixels / 1e6:g} megapixels)", file_types=UPLOAD_TYPES,
                                 type="filepath", elem_id="upload", height=120)
                gallery = None
                if examples:
                    gallery = gr.Gallery(value=examples, label="Examples: the synthetic world's test images "
                                         "(click one)", columns=4, height=250, allow_preview=False,
                                         elem_id="examples", interactive=False)
                vocab = gr.Dropdown(menu.labels, value=TYPED, label="Vocabulary", elem_id="vocabulary",
                                    info="typed names below, or a built-in list")
                classes = gr.Textbox(value=initial_classes, label="Class names, comma-separated (Enter re-scores)",
                                     placeholder="red star, blue ring", elem_id="classes", max_lines=3)
                with gr.Row():
                    thr = gr.Slider(0.0, 1.0, value=score_thr, step=0.01, label="Score threshold",
                                    elem_id="threshold")
                    maxd = gr.Number(value=max_dets, precision=0, minimum=1, maximum=limits.max_detections,
                                     label="Max detections", elem_id="max-dets")
                button = gr.Button("Detect", variant="primary", elem_id="detect")
            with gr.Column(scale=3):
                message = gr.Markdown(elem_id="message")
                timing = gr.Markdown(elem_id="timing")
                annotated = gr.Image(label="Detections", type="numpy", interactive=False, elem_id="annotated",
                                     format="png", height=420)
                table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="table",
                                     label="Detections: class, score, box (x1, y1, x2, y2 in pixels)", max_height=300)
                download = gr.File(label="COCO-style JSON", interactive=False, elem_id="json", height=80)

        inputs = [upload, vocab, classes, thr, maxd]
        outputs = [message, timing, annotated, table, download]
        one = dict(concurrency_limit=1, concurrency_id=CONCURRENCY_ID)   # one request at a time, all events
        button.click(request, inputs, outputs, **one)
        thr.change(rescore, inputs, outputs, trigger_mode="always_last", **one)   # slider and its number box
        maxd.submit(rescore, inputs, outputs, **one)
        classes.submit(rescore, inputs, outputs, **one)
        vocab.input(rescore, inputs, outputs, **one)
        upload.change(preview, [upload], outputs, **one)
        if gallery is not None:
            def pick(evt: gr.SelectData):  # a real annotation (no postponed evaluation): Gradio injects the event
                return examples[evt.index]

            gallery.select(pick, None, [upload], **one)
    return demo


def configure_queue(demo, queue_size: int = 16):
    """One request at a time (every event shares one slot), at most ``queue_size`` waiting."""
    return demo.queue(default_concurrency_limit=1, max_size=queue_size)


def launch(demo, host: str, port: int, limits, examples=(), queue_size: int = 16, block: bool = True):
    """Queue (:func:`configure_queue`) and serve on ``host:port``; uploads over ``limits.max_bytes``
    are refused by the server (HTTP 413)."""
    configure_queue(demo, queue_size)
    return demo.launch(server_name=host, server_port=port, max_file_size=limits.max_bytes,
                       allowed_paths=[str(p) for p in examples], show_error=False, share=False, inbrowser=False,
                       ssr_mode=False, mcp_server=False, pwa=False, footer_links=["gradio"], css=CSS,
                       prevent_thread_lock=not block)
