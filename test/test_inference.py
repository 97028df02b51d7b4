"""Predictor: same numbers as a manual forward, any frame sizes, clear input errors."""

from node_harness import random_checkpoint
import numpy as np
import pytest
import torch

from convitac_ros.inference import Predictor
from convitac_ros.preprocess import preprocess_frames

torch.set_num_threads(1)

HEADS = {'grasp_success': ['failure', 'success'], 'hardness': ['hard', 'soft']}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp('ckpt') / 'tiny.safetensors', HEADS,
                             num_tactile=2)


@pytest.fixture(scope='module')
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint, device='cpu')


def frames(seed, visual_size=(48, 80), tactile_size=(120, 90)):
    rng = np.random.default_rng(seed)
    visual = [rng.integers(0, 256, (*visual_size, 3), dtype=np.uint8) for _ in range(2)]
    tactile = [[rng.integers(0, 256, (*tactile_size, 3), dtype=np.uint8) for _ in range(2)]
               for _ in range(2)]
    return visual, tactile


def test_predictor_describes_the_checkpoint(predictor):
    assert predictor.heads == HEADS
    assert (predictor.visual_len, predictor.tactile_len, predictor.num_tactile) == (2, 2, 2)
    assert predictor.device == torch.device('cpu') and predictor.precision == 'fp32'
    assert predictor.model_name == 'tiny'


def test_predict_equals_a_manual_forward_on_the_same_frames(predictor):
    visual, tactile = frames(0)
    preprocess = predictor.config.image_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    visual_t = preprocess_frames(visual, *preprocess)[None]
    tactile_t = preprocess_frames([f for sensor in tactile for f in sensor], *preprocess)[None]
    with torch.no_grad():
        logits = predictor.model(visual_t, tactile_t)
    result = predictor.predict(visual, tactile)
    for head in HEADS:
        expected = logits[head].softmax(dim=-1)[0].numpy()
        np.testing.assert_allclose(result[head], expected, rtol=1e-5, atol=1e-6)
        assert result[head].dtype == np.float32 and result[head].shape == (2,)


@pytest.mark.parametrize('visual_size, tactile_size', [
    ((1, 1), (3, 500)), ((64, 64), (64, 64)), ((480, 640), (240, 320)), ((7, 300), (1000, 2)),
])
def test_predict_takes_any_frame_size(predictor, visual_size, tactile_size):
    result = predictor.predict(*frames(1, visual_size, tactile_size))
    for probabilities in result.values():
        assert np.isfinite(probabilities).all()
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_predict_batch_equals_single_predictions(predictor):
    samples = [frames(seed) for seed in range(3)]
    batch = predictor.predict_batch(samples)
    assert len(batch) == 3 and predictor.predict_batch([]) == []
    for sample, result in zip(samples, batch):
        single = predictor.predict(*sample)
        for head in HEADS:
            np.testing.assert_allclose(result[head], single[head], rtol=1e-4, atol=1e-6)


def test_predictions_do_not_alias_between_calls(predictor):
    first = predictor.predict(*frames(2))
    copy = {head: value.copy() for head, value in first.items()}
    predictor.predict(*frames(3))
    assert all(np.array_equal(first[head], copy[head]) for head in HEADS)


@pytest.mark.parametrize('change, message', [
    (lambda v, t: (v[:1], t), 'expected 2 visual frames, got 1'),
    (lambda v, t: (v, t[:1]), 'expected 2 tactile sensor'),
    (lambda v, t: (v, [t[0], t[1][:1]]), 'tactile sensor 1, got 1'),
    (lambda v, t: ([v[0].astype(np.float32), v[1]], t), 'visual frame 0 must be uint8'),
    (lambda v, t: (v, [t[0], [t[1][0], t[1][1][..., :1]]]), r'sensor 1 frame 1 must be \(H, W, 3'),
    (lambda v, t: (v, [t[0], [t[1][0], t[1][1][..., 0]]]), r'sensor 1 frame 1 must be \(H, W, 3'),
])
def test_bad_input_is_refused_with_a_clear_error(predictor, change, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(*change(*frames(4)))


def test_bad_sample_in_a_batch_is_named(predictor):
    good, (visual, tactile) = frames(5), frames(6)
    with pytest.raises(ValueError, match='sample 1: expected 2 visual frames'):
        predictor.predict_batch([good, (visual[:1], tactile)])


def test_attention_maps_have_each_frame_size_and_unit_range(predictor):
    visual, tactile = frames(7)
    probabilities, maps = predictor.predict_with_attention(visual, tactile)
    expected = predictor.predict(visual, tactile)
    for head in HEADS:
        np.testing.assert_allclose(probabilities[head], expected[head], rtol=1e-4, atol=1e-6)
    assert [m.shape for m in maps.visual] == [(48, 80)] * 2
    assert [[m.shape for m in sensor] for sensor in maps.tactile] == [[(120, 90)] * 2] * 2
    for heat_map in [*maps.visual, *maps.tactile[0], *maps.tactile[1]]:
        assert heat_map.dtype == np.float32 and 0.0 <= heat_map.min() <= heat_map.max() <= 1.0


def test_warmup_runs_and_bad_options_are_refused(checkpoint, predictor):
    predictor.warmup(iterations=1, batch_size=2)
    with pytest.raises(ValueError, match='precision'):
        Predictor.from_checkpoint(checkpoint, device='cpu', precision='fp8')
    with pytest.raises(ValueError, match='cuda_graph'):
        Predictor.from_checkpoint(checkpoint, device='cpu', cuda_graph=True)


@CUDA
@pytest.mark.parametrize('options', [{}, {'cuda_graph': True}, {'precision': 'fp32'}])
def test_cuda_predictor_matches_cpu(checkpoint, predictor, options):
    gpu = Predictor.from_checkpoint(checkpoint, device='cuda', **options)
    gpu.warmup(iterations=2)
    for seed in (8, 9):
        sample = frames(seed)
        expected, actual = predictor.predict(*sample), gpu.predict(*sample)
        for head in HEADS:
            np.testing.assert_allclose(actual[head], expected[head], atol=2e-2)


def test_resize_on_the_device_predicts_as_the_training_resize(checkpoint, predictor):
    """The CUDA path's preprocessing (frames up at received size) run on the CPU."""
    on_device = Predictor.from_checkpoint(checkpoint, device='cpu')
    on_device.resize_on_device = True
    assert not predictor.resize_on_device  # the CPU default: OpenCV on the host
    for seed, sizes in ((10, ((480, 640), (240, 320))), (11, ((48, 80), (120, 90)))):
        sample = frames(seed, *sizes)
        host_visual, host_tactile = predictor.preprocess_batch([sample])
        device_visual, device_tactile = on_device.preprocess_batch([sample])
        largest = 1 / 255 / 0.224  # one uint8 level, after normalisation (DeviceResize)
        assert (device_visual - host_visual).abs().max().item() <= largest + 1e-6
        assert (device_tactile - host_tactile).abs().max().item() <= largest + 1e-6
        expected, actual = predictor.predict(*sample), on_device.predict(*sample)
        for head in HEADS:  # inputs within one uint8 level of the host resize
            np.testing.assert_allclose(actual[head], expected[head], atol=5e-3)


@CUDA
def test_cuda_graphs_are_captured_per_input_size_up_to_the_cap(checkpoint, predictor):
    from convitac_ros.inference import MAX_CUDA_GRAPHS

    gpu = Predictor.from_checkpoint(checkpoint, device='cuda')
    assert gpu.resize_on_device and gpu.graph_sizes == []
    gpu.warmup(iterations=1)
    assert gpu.graph_sizes == []  # warm-up runs eager; real frame sizes get the graphs
    sizes = [(480 - 8 * i, 640) for i in range(MAX_CUDA_GRAPHS + 2)]
    for size in [*sizes, sizes[0]]:
        sample = frames(12, size, (240, 320))
        expected, actual = predictor.predict(*sample), gpu.predict(*sample)
        for head in HEADS:
            np.testing.assert_allclose(actual[head], expected[head], atol=2e-2)
    assert len(gpu.graph_sizes) == MAX_CUDA_GRAPHS
    assert gpu.graph_counts == {'captured': MAX_CUDA_GRAPHS, 'eager beyond cap': 2}


def test_one_graph_per_input_size_up_to_the_cap_counted(checkpoint, predictor, monkeypatch):
    """The graph bookkeeping on the CPU: capture replaced by a stand-in that replays eagerly."""
    from convitac_ros.inference import MAX_CUDA_GRAPHS

    gpu_like = Predictor.from_checkpoint(checkpoint, device='cpu')
    gpu_like.resize_on_device, gpu_like._use_cuda_graph = True, True  # noqa: SLF001
    gpu_like.graph_counts = {'captured': 0, 'eager beyond cap': 0}
    probabilities = gpu_like._probabilities  # noqa: SLF001
    captured = []

    class Replay:
        """Stands in for a captured CUDA graph: recomputes its static output."""

        def __init__(self, staged, inputs):
            self.staged, self.inputs = staged, inputs
            self.output = probabilities(staged, inputs)

        def replay(self):
            self.output.copy_(probabilities(self.staged, self.inputs))

    def capture(staged):
        captured.append(staged.key)
        graph = Replay(staged, [t.clone() for t in gpu_like._to_device(staged)])  # noqa: SLF001
        return graph, graph.inputs, graph.output

    monkeypatch.setattr(gpu_like, '_capture', capture)
    gpu_like.warmup(iterations=1)
    assert captured == []  # warm-up runs eager
    sizes = [(60 + 4 * i, 80) for i in range(MAX_CUDA_GRAPHS + 1)]
    for size in [*sizes, sizes[1]]:
        sample = frames(13 + size[0], size, (40, 30))
        expected, actual = predictor.predict(*sample), gpu_like.predict(*sample)
        for head in HEADS:  # inputs within one uint8 level of the host resize
            np.testing.assert_allclose(actual[head], expected[head], atol=5e-3)
    assert len(captured) == len(gpu_like.graph_sizes) == MAX_CUDA_GRAPHS
    assert captured[0] == ((60, 80), (60, 80), (40, 30), (40, 30), (40, 30), (40, 30))
    assert gpu_like.graph_counts == {'captured': MAX_CUDA_GRAPHS, 'eager beyond cap': 1}
