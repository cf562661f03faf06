import pytest
import torch
from torchvision.transforms import v2

from framework.data.transforms import GridMask, HSVJitter, MixTransform, Mosaic, Pipeline
from tests.data.transforms.test_mosaic_mixup import solid


class Recorder(MixTransform):
    """Records the partners it receives."""

    num_partners = 2

    def __init__(self, prob=1.0):
        self.prob, self.seen = prob, []

    def __call__(self, sample, partners):
        self.seen.append([p[0].shape[-2:] for p in partners])
        return sample


def loader(h=30, w=50):
    return lambda i: solid(i, h, w, image_id=i)


def test_partners_go_through_the_transforms_before_the_first_mixing_one():
    rec = Recorder()
    pipeline = Pipeline([v2.Resize(size=None, max_size=20), rec, v2.Resize((7, 7))])
    image, target = pipeline.sample(3, loader(), length=10)
    assert image.shape[-2:] == (7, 7) and target["image_id"] == 3
    assert rec.seen == [[(12, 20), (12, 20)]]  # resized (prefix) but not the final square resize


def test_direct_call_refuses_mixing_and_works_without():
    with pytest.raises(TypeError, match="PipelineDataset"):
        Pipeline([Mosaic(32)])(*solid(1, 10, 10))
    image, _ = Pipeline([v2.Resize((5, 6))])(*solid(1, 10, 10))
    assert image.shape[-2:] == (5, 6)


def test_close_mosaic_and_ramps_follow_the_epoch():
    gm = GridMask(prob=0.8, ramp_epochs=4)
    rec = Recorder(prob=1.0)
    pipeline = Pipeline([v2.RandomApply([gm], p=1.0), rec, HSVJitter()], close_mosaic_epochs=2)
    for epoch, mixing in ((0, True), (7, True), (8, False), (9, False)):
        pipeline.set_epoch(epoch, max_epochs=10)
        assert pipeline.mixing is mixing
        before = len(rec.seen)
        pipeline.sample(0, loader(), length=4)
        assert len(rec.seen) == before + int(mixing)
    assert gm.epoch == 9  # reached inside RandomApply
    pipeline.set_epoch(2, max_epochs=10)
    assert pipeline.epoch_summary() == {"GridMask.prob": pytest.approx(0.4), "Recorder.prob": 1.0}
    pipeline.set_epoch(9, max_epochs=10)
    assert pipeline.epoch_summary()["Recorder.prob"] == 0.0
    with pytest.raises(ValueError, match="close_mosaic_epochs"):
        Pipeline([], close_mosaic_epochs=-1)


def test_mixing_probability_is_per_sample():
    rec = Recorder(prob=0.3)
    pipeline = Pipeline([rec])
    torch.manual_seed(0)
    for i in range(400):
        pipeline.sample(i % 5, loader(), length=5)
    assert 0.24 < len(rec.seen) / 400 < 0.36
