"""The ``unidet serve`` page: a Gradio ``Blocks`` app over :class:`~unidetector.app.core.DetectionService`.

Left: the image (upload, or click an example), the vocabulary (typed class names or a built-in list),
the score-threshold slider, the max-detections box and the Detect button; below them the image
exemplars: the image to mark on (the one to detect in, or another uploaded exemplar image), where two
clicks mark opposite corners of a box (``gr.Image`` ``select`` events give the clicked pixel; the box
can also be typed), the class name, "Add exemplar" and "Clear exemplars", and the page's exemplars
(class, image, box). Right: a message line (refused uploads, bad class lists), the timing line
(network pass and re-scoring, or "re-scored the cached regions: no network pass"), the annotated
image, the table (class, score, box, and whether the class came from text, an exemplar or both) and
the COCO-style JSON download. Changing the threshold, the max detections or the classes (Enter), the
vocabulary or the exemplars re-runs the request: the detector re-scores its cached regions.

Element ids (for tests and styling): ``upload``, ``examples``, ``vocabulary``, ``classes``,
``threshold``, ``max-dets``, ``detect``, ``message``, ``timing``, ``annotated``, ``table``, ``json``;
exemplars: ``exemplar-source``, ``exemplar-upload``, ``exemplar-canvas``, ``exemplar-box``,
``exemplar-name``, ``exemplar-add``, ``exemplar-clear``, ``exemplar-message``, ``exemplars``.
"""
import html
import re
import sys
import traceback

from ..errors import UnidetError
from .core import TABLE_HEADERS, TYPED, InputRejected, read_upload
from .exemplars import EXEMPLAR_HEADERS, check_box, format_box, marked_image, next_corners, parse_box

UPLOAD_TYPES = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"]
CONCURRENCY_ID = "detector"          # every event that uses the detector or the service's state: one at a time
MARKS_ID = "marks"                   # showing an image to mark on and the clicks on it: never wait for a detection
SOURCE_IMAGE, SOURCE_OTHER = "the image to detect in", "another image (upload it below)"
CSS = ("#message p, #exemplar-message strong { color: #b42318; font-weight: 600; } "
       "#timing p { color: #475467; }")


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

    def request(path, label, typed, thr, maxd, exemplars=None):
        """The Detect button: message, timing, annotated image, table rows, JSON path."""
        try:
            rgb, name = read_upload(path, limits, roots)
            names, builtin = menu.names(label, typed, limits, allow_empty=bool(exemplars))
            res = service.detect(rgb, name, names, builtin, thr, maxd, exemplars)
        except UnidetError as e:               # refused input, bad vocabulary, detector errors
            return outputs_for_error(e)
        except Exception:  # noqa: BLE001 - never a traceback on the page; the server log has it
            traceback.print_exc(file=sys.stderr)
            return outputs_for_error("internal error while detecting (the server log has the details)")
        return "", res.timing, res.annotated, res.rows, res.json_path

    def rescore(path, label, typed, thr, maxd, exemplars=None):
        """Threshold, max detections, classes, vocabulary or exemplars changed: the same request, if an image
        is there."""
        if not path:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return request(path, label, typed, thr, maxd, exemplars)

    # -- image exemplars: outputs (canvas, corners, box text, exemplar message) unless said otherwise
    def marking(source, path, ex_path):
        """``(rgb, name)`` of the image boxes are marked on (the source choice), InputRejected otherwise."""
        if source == SOURCE_OTHER and not ex_path:
            raise InputRejected("no exemplar image yet: upload one below (or mark on the image to detect in)")
        return read_upload(ex_path if source == SOURCE_OTHER else path, limits, roots)

    def show_canvas(source, path, ex_path):
        """A new image to mark on (or a new source choice): show it, forget the corners clicked so far."""
        if not (ex_path if source == SOURCE_OTHER else path):
            return None, [], "", ""
        try:
            rgb, name = marking(source, path, ex_path)
        except InputRejected as e:
            return None, [], "", f"**{escape(e)}**"
        return (rgb, [], "", f"Click two opposite corners of a box on {escape(name)} ({rgb.shape[1]}x{rgb.shape[0]} "
                "pixels), or type the box; then name it and press Add exemplar.")

    def use_exemplar_image(ex_path, source, path):
        """An exemplar image uploaded (or removed): mark on it (or back on the image to detect in);
        outputs: the source choice, then those of :func:`show_canvas`."""
        source = SOURCE_OTHER if ex_path else SOURCE_IMAGE
        return (source, *show_canvas(source, path, ex_path))

    def mark(source, path, ex_path, corners, evt: gr.SelectData):  # Gradio injects the click: evt.index = [x, y]
        """A click on the image: the first corner of a box, or the opposite one (the box is drawn and typed)."""
        if not evt.index or len(evt.index) != 2:      # a click beside the image (letterbox): nothing to mark
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            rgb, name = marking(source, path, ex_path)
        except InputRejected as e:
            return gr.skip(), [], gr.skip(), f"**{escape(e)}**"
        corners, box = next_corners(corners, evt.index)
        if box is None:
            x, y = corners[0]
            return (marked_image(rgb, corner=(x, y)), corners, "",
                    f"First corner at ({x:g}, {y:g}): click the opposite corner of the box.")
        return boxed(rgb, name, box, corners)

    def boxed(rgb, name, box, corners):
        """The outputs for a marked or typed box: drawn and typed, or why it is refused (corners forgotten)."""
        try:
            box = check_box(box, rgb.shape[1], rgb.shape[0], name)
        except InputRejected as e:
            return marked_image(rgb), [], format_box(box), f"**{escape(e)}**"
        return (marked_image(rgb, box=box), corners, format_box(box),
                f"Box {format_box(box)} on {escape(name)}: type its class name and press Add exemplar.")

    def show_box(source, path, ex_path, box_text):
        """A typed box (Enter): drawn on the image, or why it is refused."""
        try:
            rgb, name = marking(source, path, ex_path)
            box = parse_box(box_text)
        except InputRejected as e:
            return gr.skip(), [], gr.skip(), f"**{escape(e)}**"
        return boxed(rgb, name, box, [])

    def add_exemplar(source, path, ex_path, box_text, name, exemplars):
        """Add exemplar: the exemplars (state), their table rows, a message."""
        exemplars = service.new_exemplars() if exemplars is None else exemplars
        try:
            rgb, image_name = marking(source, path, ex_path)
            ex = service.add_exemplar(exemplars, name, rgb, image_name, parse_box(box_text))
        except UnidetError as e:
            return exemplars, exemplars.rows(), f"**{escape(e)}**"
        except Exception:  # noqa: BLE001 - never a traceback on the page; the server log has it
            traceback.print_exc(file=sys.stderr)
            return exemplars, exemplars.rows(), "**internal error while adding the exemplar (see the server log)**"
        return (exemplars, exemplars.rows(), f"Added an exemplar of {escape(ex.name)} ({len(exemplars)} on this "
                "page): detections use it.")

    def clear_exemplars():
        """Clear exemplars: an empty set, no rows, a message."""
        return service.new_exemplars(), [], "Exemplars cleared."

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
        gr.Markdown("## UniDetector: detect anything\nUpload an image, name the classes to find (or mark an example "
                    "of one with a box: an image exemplar), press **Detect**. Changing only the classes, the "
                    "exemplars or the threshold re-scores the image's cached regions (no network "
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
                with gr.Accordion("Image exemplars: a box on an image as a query", open=True):
                    gr.Markdown("Click two opposite corners of an object on the image below (or type its box), "
                                "name it and press **Add exemplar**: that class is then detected by its look. A "
                                "name also typed above mixes the name and the exemplar.")
                    ex_source = gr.Radio([SOURCE_IMAGE, SOURCE_OTHER], value=SOURCE_IMAGE, label="Mark the box on",
                                         elem_id="exemplar-source")
                    ex_upload = gr.File(label="Exemplar image (optional)", file_types=UPLOAD_TYPES, type="filepath",
                                        elem_id="exemplar-upload", height=90)
                    canvas = gr.Image(label="Click two opposite corners of a box", type="numpy", interactive=False,
                                      elem_id="exemplar-canvas", format="png", height=320, buttons=[])
                    with gr.Row():
                        ex_box = gr.Textbox(label="Box x1, y1, x2, y2 (pixels; Enter draws it)", elem_id="exemplar-box",
                                            placeholder="click the image", max_lines=1)
                        ex_name = gr.Textbox(label="Class name of the box", elem_id="exemplar-name",
                                             placeholder="e.g. blue ring", max_lines=1)
                    with gr.Row():
                        ex_add = gr.Button("Add exemplar", elem_id="exemplar-add")
                        ex_clear = gr.Button("Clear exemplars", elem_id="exemplar-clear")
                    ex_message = gr.Markdown(elem_id="exemplar-message")
                    ex_table = gr.Dataframe(headers=EXEMPLAR_HEADERS, interactive=False, elem_id="exemplars",
                                            label="Exemplars of this page: class, image, box", max_height=200)
                exemplars = gr.State(None)      # this page's ExemplarSet (records; the pixels are the service's)
                corners = gr.State([])          # the corners clicked so far (0 or 1; 2 = a box)
            with gr.Column(scale=3):
                message = gr.Markdown(elem_id="message")
                timing = gr.Markdown(elem_id="timing")
                annotated = gr.Image(label="Detections", type="numpy", interactive=False, elem_id="annotated",
                                     format="png", height=420)
                table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="table",
                                     label="Detections: class, score, box (x1, y1, x2, y2 in pixels), query (the "
                                     "class from text, an exemplar or both)", max_height=300)
                download = gr.File(label="COCO-style JSON", interactive=False, elem_id="json", height=80)

        inputs = [upload, vocab, classes, thr, maxd, exemplars]
        outputs = [message, timing, annotated, table, download]
        one = dict(concurrency_limit=1, concurrency_id=CONCURRENCY_ID)   # one request at a time
        marks = dict(concurrency_limit=2, concurrency_id=MARKS_ID)       # reads an upload, draws: no detector
        button.click(request, inputs, outputs, **one)
        thr.change(rescore, inputs, outputs, trigger_mode="always_last", **one)   # slider and its number box
        maxd.submit(rescore, inputs, outputs, **one)
        classes.submit(rescore, inputs, outputs, **one)
        vocab.input(rescore, inputs, outputs, **one)
        upload.change(preview, [upload], outputs, **one)
        sources = [ex_source, upload, ex_upload]
        marked = [canvas, corners, ex_box, ex_message]
        upload.change(show_canvas, sources, marked, **marks)
        ex_source.input(show_canvas, sources, marked, **marks)
        ex_upload.change(use_exemplar_image, [ex_upload, ex_source, upload], [ex_source, *marked], **marks)
        canvas.select(mark, [*sources, corners], marked, **marks)
        ex_box.submit(show_box, [*sources, ex_box], marked, **marks)
        ex_add.click(add_exemplar, [*sources, ex_box, ex_name, exemplars], [exemplars, ex_table, ex_message],
                     **one).then(rescore, inputs, outputs, **one)
        ex_clear.click(clear_exemplars, None, [exemplars, ex_table, ex_message], **one).then(
            rescore, inputs, outputs, **one)
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
