"""``unidet serve``: detect anything in the browser (a Gradio app over :class:`unidetector.api.Detector`).

:mod:`unidetector.app.core` holds everything the page does without Gradio (models of a work dir,
upload checks, vocabularies, one detection request with its timings, table and COCO-style JSON),
and :mod:`unidetector.app.exemplars` the image exemplars (boxes marked on an image as queries), so
both are testable without a browser; :mod:`unidetector.app.ui` lays them out as a ``gr.Blocks`` page.
Gradio is the optional extra ``pip install 'jittor-unidetector[app]'`` (``scripts/install.sh``
installs it); only :mod:`unidetector.app.ui` imports it.
"""
