"""The live dashboard: a bounded model of the streams (:mod:`.model`), its
XREAD reader (:mod:`.feed`) and the web server with its page (:mod:`.server`,
``static/``). The server needs the ``dashboard`` extra (Starlette, uvicorn);
the model and the reader need only the base install."""
