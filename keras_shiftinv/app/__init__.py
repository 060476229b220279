"""The TensorFlow application of keras_shiftinv: the commands (`python -m
keras_shiftinv` / `keras-shiftinv`), training, data, run folders, evaluation,
export, deployment and predict. It imports the library (`keras_shiftinv`) and the
zoo; neither imports it.
"""
