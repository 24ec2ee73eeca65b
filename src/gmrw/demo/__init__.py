"""``gmrw-demo``: try GMRW tracking in the browser (Gradio; ``pip install -e ".[demo]"``)."""
