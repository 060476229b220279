"""The test data of the reproduction and the measurement of one trained model
(`keras_shiftinv.app.evaluate.measure`, with the images fitted to the model by
`keras_shiftinv.app.input_fit` as in training)."""

from keras_shiftinv.app import data, evaluate, input_fit


def test_images(count, batch_size, data_dir):
    """The first `count` test images, fitted to the model and batched as in
    training (`keras_shiftinv.app.input_fit`)."""
    ds, info = data.load("fashion_mnist", "test", data_dir=data_dir)
    fit = input_fit.fit_options(info.image_shape)
    return data.pipeline(ds.take(count), batch_size, training=False, **fit).cache()


def test_batches(settings, data_dir):
    """(test data, detail data): the first test images, batched as in training."""
    return tuple(
        test_images(count, settings.batch_size, data_dir)
        for count in (settings.test_images, settings.detail_images)
    )


def measure(model, test, detail, settings):
    """The shift-robustness numbers of one trained model."""
    return evaluate.measure(
        model,
        test,
        detail,
        names=(
            "accuracy",
            "shifted_accuracy",
            "consistency_circular",
            "consistency_crop",
            "consistency_crop_symmetric",
            "variation",
            "stability",
        ),
        max_shift=settings.max_shift,
        samples=settings.samples,
        seed=settings.seed,
        stability_shift=settings.stability_shift,
    )
