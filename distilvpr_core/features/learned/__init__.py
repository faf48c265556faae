"""A small learned local descriptor, trained on the synthetic town (issue 28).

``model.py`` is the torch network (training and export only); ``runtime.py``
runs its ONNX export with ONNX Runtime and is the extractor the registry names
``"learned"``; ``preprocess.py`` is the image preparation both share.  The
training command lives above the map and the engine (localtrain/), because it
renders the synthetic town.
"""
