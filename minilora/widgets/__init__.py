"""ipywidgets panels built on minilora.viz. The logic lives in plain functions that tests
drive by setting ``.value`` on the controls; every panel also has a static figure.

One submodule per topic; the public panels are re-exported here.
"""
