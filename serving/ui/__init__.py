"""The app at ``/app``: a Gradio front end on the serving endpoint for people checking a
citation. Gradio is imported only when the app is built
(:func:`~citeops.serving.ui.blocks.mount_app`)."""
