"""The ablation study and the Grad-CAM figure, end to end on a tiny synthetic world.

Every variant trains for a couple of optimizer steps only: these tests prove that the study
writes well-formed tables and figures, not what the numbers are.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from convitac_ros.model import ConViTac, ModelConfig
from training.ablate import load_preset
from training.ablate import main as ablate_main
from training.ablate_table import mean_std
from training.attention_figure import COLUMNS, make_figure
from training.gradcam import change_mask, contact_scores, grad_cam
from training.train_config import ConfigError

PRESET = 'ablate_reduced'
SHORT = ['stage1.max_steps=2', 'stage2.max_steps=2', 'stage1.batch_size=8',
         'stage2.batch_size=8', 'runtime.eval_every_epochs=100', 'runtime.device=cpu']


@pytest.fixture(scope='module')
def study(synthetic_tag_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reduced preset's Touch-and-Go table for one seed, a few steps per variant."""
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp('ablate')
    argv = ['--preset', PRESET, '--dataset', 'synthetic_tag', '--seeds', '0',
            '--data-root', str(synthetic_tag_root), '--work-dir', str(work / 'runs'),
            '--output', str(work / 'results'), '--device', 'cpu', '--no-progress']
    for override in SHORT:
        argv += ['--set', override]
    results = ablate_main(argv)
    return {'results': results, 'work': work, 'argv': argv}


def test_ablation_writes_a_table_with_every_variant_and_the_chance_rows(study: dict) -> None:
    preset = load_preset(PRESET)
    table = study['results']['tables']['synthetic_tag']
    assert [row['key'] for row in table['rows']] == [v.key for v in preset.variants]
    assert table['heads'] == ['material', 'hardness', 'roughness']
    for row in table['rows']:
        for head in table['heads']:
            cell = row['accuracy'][head]
            assert cell['n'] == 1 and 0.0 <= cell['mean'] <= 1.0
    assert table['chance']['uniform']['hardness'] == pytest.approx(0.5)
    assert 0.0 <= table['chance']['majority']['material'] <= 1.0
    results = study['work'] / 'results'
    assert json.loads((results / f'{PRESET}.json').read_text())['tables'].keys() == {
        'synthetic_tag'}
    markdown = (results / f'{PRESET}.md').read_text()
    for text in ['Chance (majority class of train)', 'Chance (uniform guess)', 'Category',
                 'Hard / Soft', 'Rough / Smooth', *(v.label for v in preset.variants)]:
        assert text in markdown


def test_cec_variants_share_one_stage1_encoder_per_seed(study: dict) -> None:
    seed_dir = study['work'] / 'runs' / 'synthetic_tag' / 'seed0'
    records = {path.parent.name: json.loads(path.read_text())
               for path in seed_dir.glob('*/ablation_run.json')}
    shared = {r['shared_encoder'] for key, r in records.items()
              if r['model']['fusion'] == 'cec' and key != 'convitac_random_encoder'}
    assert shared == {str(seed_dir / 'stage1' / 'best.safetensors')}
    assert records['convitac_random_encoder']['shared_encoder'] == str(
        seed_dir / 'stage1_convitac_random_encoder' / 'best.safetensors')
    assert records['concat']['shared_encoder'] is None
    assert 'stage1_val' in records['convitac'] and records['concat']['stage1_val'] is None


def test_rerun_reuses_cached_runs_and_rerenders_the_table(study: dict) -> None:
    again = ablate_main([*study['argv'], '--no-train'])
    assert again['tables'] == study['results']['tables']


def test_figure_has_the_eight_panels_per_row_and_contact_scores(study: dict) -> None:
    seed_dir = study['work'] / 'runs' / 'synthetic_tag' / 'seed0'
    output = study['work'] / 'figure' / 'gradcam.png'
    report = make_figure([seed_dir / 'convitac_tokens' / 'best.safetensors'],
                         [seed_dir / 'cross_attention' / 'best.safetensors'], output, rows=2,
                         score_samples=6)
    image = plt_image(output)
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # 8 columns, 2 rows: landscape
    assert len(COLUMNS) == 8 and sum('E^c' in title for title in COLUMNS) == 2
    scores = report['runs'][0]['scores']
    assert set(scores) == set(report['summary']) == {'with_cec', 'without_cec'}
    for name in scores:
        assert {'gradcam_visual', 'gradcam_tactile', 'attention_visual'} <= set(scores[name])
        assert 0.0 <= scores[name]['gradcam_visual']['mass_inside'] <= 1.0
        assert report['summary'][name]['gradcam_visual']['enrichment']['n'] == 1
    assert {'conditioncam_visual', 'conditioncam_tactile'} <= set(scores['with_cec'])
    assert not any(kind.startswith('conditioncam') for kind in scores['without_cec'])
    assert json.loads(output.with_suffix('.json').read_text())['figure'] == 'gradcam.png'


def plt_image(path: Path) -> np.ndarray:
    """Reads a PNG as an array (checks that it is a real image)."""
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_grad_cam_gives_one_map_per_stream_in_unit_range() -> None:
    torch.manual_seed(0)
    config = ModelConfig.tiny(num_tactile=2, heads=(('grasp_success', 2),))
    model = ConViTac(config).eval()
    visual = torch.randn(3, config.visual_len, 3, 64, 64)
    tactile = torch.randn(3, 2 * config.tactile_len, 3, 64, 64)
    maps = grad_cam(model, visual, tactile, 'grasp_success', [0, 1, 1])
    assert maps['visual'].shape == (3, 64, 64)
    assert maps['tactile'].shape == (3, 2, 64, 64)
    assert maps['visual'].min() >= 0.0 and maps['visual'].max() <= 1.0 + 1e-6
    touch_only = ConViTac(config.replace(modalities='touch')).eval()
    assert set(grad_cam(touch_only, None, tactile, 'grasp_success', [0, 1, 1])) == {'tactile'}


def test_contact_scores_reward_maps_that_sit_on_the_contact() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[:, :2, :2] = True
    inside = masks.astype(float)
    uniform = np.ones((2, 8, 8))
    assert contact_scores(inside, masks)['mass_inside'] == pytest.approx(1.0)
    assert contact_scores(inside, masks)['enrichment'] == pytest.approx(16.0)
    assert contact_scores(uniform, masks)['enrichment'] == pytest.approx(1.0)


def test_change_mask_finds_the_pressed_patch() -> None:
    before = np.full((40, 40, 3), 100, np.uint8)
    after = before.copy()
    after[10:20, 25:35] = 200
    mask = change_mask(before, after, 40)
    assert mask[15, 30] and not mask[35, 5]


def test_mean_std_uses_the_sample_deviation_and_skips_missing() -> None:
    stats = mean_std([0.5, 0.7, float('nan')])
    assert stats['mean'] == pytest.approx(0.6) and stats['n'] == 2
    assert stats['std'] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_preset_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump({'name': 'bad', 'seeds': [0], 'datasets': [],
                                    'variants': [], 'extra': 1}))
    with pytest.raises(ConfigError, match='extra'):
        load_preset(str(path))


def test_disk_need_is_checked_before_training_and_finished_runs_drop_their_state(
        study: dict, tmp_path: Path) -> None:
    from training.ablate import check_disk

    seed_dir = study['work'] / 'runs' / 'synthetic_tag' / 'seed0'
    runs = [path.parent for path in seed_dir.glob('*/ablation_run.json')]
    assert runs and not any((run / 'state.safetensors').exists() for run in runs)
    assert (seed_dir / 'stage1' / 'state.safetensors').is_file()  # the shared encoder's
    check_disk(1, tmp_path)
    with pytest.raises(ConfigError, match=r'not enough disk space.*needs up to \d+ MiB'):
        check_disk(1 << 60, tmp_path / 'not' / 'yet')


def test_paired_difference_is_the_mean_seed_difference_with_a_t_interval():
    from training.ablate_table import paired_difference

    stats = paired_difference([0.5, 0.6, 0.55, None], [0.4, 0.5, 0.5, 0.3])
    assert stats['n'] == 3 and abs(stats['mean'] - 0.25 / 3) < 1e-12
    # differences 0.1, 0.1, 0.05: sd 0.0289, se 0.0167, t(2 df) = 4.303
    low, high = stats['ci95']
    assert abs(low - 0.01162) < 1e-4 and abs(high - 0.15505) < 1e-4
    assert paired_difference([0.5], [0.4])['ci95'] is None


def test_stage1_of_each_seed_sits_beside_what_the_condition_gains() -> None:
    from training.ablate_table import stage1_by_seed, stage1_markdown

    def record(seed, material, top1=None):
        val = None if top1 is None else {'retrieval_top1': top1, 'retrieval_top5': 0.9,
                                         'chance_top1': 1 / 32}
        return {'seed': seed, 'accuracy': {'material': material}, 'stage1_val': val,
                'shared_encoder': f'seed{seed}/stage1/last.safetensors'}
    by_seed = {'convitac': {0: record(0, 0.60, 0.40), 1: record(1, 0.50, 0.05)},
               'cross_attention': {0: record(0, 0.45), 1: record(1, 0.49)}}
    rows = [{'key': 'convitac', 'label': 'ConViTac'}, {'key': 'cross_attention', 'label': 'x'}]
    entries = stage1_by_seed(rows, by_seed)
    assert [e['seed'] for e in entries] == [0, 1]
    assert entries[0]['minus_cross_attention']['material'] == pytest.approx(0.15)
    table = {'rows': rows, 'heads': ['material'], 'head_titles': {'material': 'Category'},
             'stage1_by_seed': entries}
    markdown = stage1_markdown(table)
    assert '| 0 | 40.0 | 12.8 | 90.0 | +15.0 |' in markdown
    assert '| 1 | 5.0 | 1.6 | 90.0 | +1.0 |' in markdown
    assert stage1_by_seed(rows, {**by_seed, 'convitac': {0: record(0, 0.6)}}) == []


def test_seed_jobs_get_the_command_line_with_their_own_seed_threads_and_output() -> None:
    from training.ablate import seed_jobs_argv

    argv = ['--preset', 'p', '--jobs', '3', '--seeds', '0', '1', '2', '--threads=4',
            '--set', 'stage1.epochs=2', '--output', 'out', '--device', 'cuda']
    assert seed_jobs_argv(argv, 1, 2, Path('logs/t1')) == [
        '--preset', 'p', '--set', 'stage1.epochs=2', '--device', 'cuda',
        '--seeds', '1', '--threads', '2', '--output', 'logs/t1']


def test_stage1_time_is_that_of_the_run_that_trained_the_encoder() -> None:
    from training.ablate_table import summarise

    def record(variant, encoder, seconds):
        return {'variant': variant, 'seed': 0, 'accuracy': {'material': 0.5},
                'stage2_seconds': 10.0, 'stage1_seconds': seconds, 'shared_encoder': encoder,
                'parameters': None, 'test_samples': 1, 'chance_majority': {'material': 0.1},
                'chance_uniform': {'material': 0.1}}
    rows = [type('V', (), {'key': k, 'label': k, 'modalities': 'both'})()
            for k in ('a', 'b', 'c')]
    # 'b' resumed the finished encoder in a later process (0 s); 'c' has a 0-epoch encoder.
    table = summarise('t', rows, [record('a', 'e1', 600.0), record('b', 'e1', 0.0),
                                  record('c', 'e0', 0.0)], [0])
    assert table['stage1_seconds']['mean'] == 600.0
    assert table['train_seconds_total'] == 30.0 + 600.0


@pytest.mark.parametrize('preset', ['tiny', 'tiny_resnet'])  # a ViT E^c and 0.6's ResNet
def test_grad_cam_on_the_condition_path_sees_what_e_c_contributes(preset: str) -> None:
    torch.manual_seed(0)
    config = getattr(ModelConfig, preset)(num_tactile=2, heads=(('grasp_success', 2),))
    model = ConViTac(config).eval()
    model.freeze_contrastive_encoder()
    visual = torch.randn(3, config.visual_len, 3, 64, 64)
    tactile = torch.randn(3, 2 * config.tactile_len, 3, 64, 64)
    closed = grad_cam(model, visual, tactile, 'grasp_success', [0, 1, 1], path='condition')
    assert closed['visual'].shape == (3, 64, 64) and closed['tactile'].shape == (3, 2, 64, 64)
    assert np.abs(closed['visual']).max() == 0  # the zero gate: E^c does not act yet
    with torch.no_grad():
        model.condition_gate.gate.fill_(1.0)
    opened = grad_cam(model, visual, tactile, 'grasp_success', [0, 1, 1], path='condition')
    assert opened['visual'].std() > 0.05 and opened['tactile'].std() > 0.05
    assert opened['visual'].max() <= 1.0 + 1e-6
    assert not any(p.requires_grad or p.grad is not None
                   for p in model.contrastive_encoder.parameters())  # still frozen
    cross = ConViTac(config.replace(fusion='cross_attention')).eval()
    assert grad_cam(cross, visual, tactile, 'grasp_success', [0, 1, 1], path='condition') == {}


def test_correlations_carry_a_fisher_interval_for_every_head() -> None:
    from training.ablate_table import correlation

    # The 0.2.1 figure: r = 0.89 over 5 seeds has the interval [0.04, 0.99].
    x = [0.228, 0.406, 0.509, 0.536, 0.567]
    y = [0.05, 0.25, 0.18, 0.26, 0.27]
    stats = correlation(x, y)
    r = float(np.corrcoef(x, y)[0, 1])
    assert stats['r'] == pytest.approx(r) and stats['n'] == 5
    half = 1.959964 / np.sqrt(2)
    assert stats['ci95'] == pytest.approx([np.tanh(np.arctanh(r) - half),
                                           np.tanh(np.arctanh(r) + half)])
    assert correlation([0.1, 0.2, 0.3], [1, 2, 4])['ci95'] is None  # too few seeds
    assert correlation([0.1, 0.1, 0.1, 0.1], [1, 2, 3, 4])['r'] is None


def test_the_fair_preset_has_an_equal_compute_control_initialised_by_stage1(tmp_path) -> None:
    from convitac_ros.checkpoint import CheckpointError, save_contrastive_encoder
    from convitac_ros.model import ContrastiveEncoder
    from training.ablate import load_preset
    from training.train import init_fusion_from_encoder

    preset = load_preset('ablate_fair')
    control, = [v for v in preset.variants if 'model.fusion_from_stage1=true' in v.train]
    assert control.model['fusion'] == 'cross_attention' and len(preset.seeds) >= 5
    config = ModelConfig.tiny_resnet(**control.model)  # demo.yaml's preset
    encoder = ContrastiveEncoder(ModelConfig.tiny_resnet())
    path = tmp_path / 'stage1.safetensors'
    save_contrastive_encoder(path, encoder)
    model = ConViTac(config)
    assert init_fusion_from_encoder(model, path) == ['visual', 'tactile']
    for side in ('visual', 'tactile'):
        tokenizer = getattr(model, f'{side}_encoder').tokenizer.state_dict()
        for key, value in encoder.tokenizer.state_dict().items():
            assert torch.equal(tokenizer[key], value), key
    with pytest.raises(CheckpointError, match='does not fit the visual fusion encoder'):
        init_fusion_from_encoder(ConViTac(ModelConfig.tiny(fusion='cross_attention')), path)


def test_a_preset_written_before_0_5_3_still_marks_its_control(tmp_path) -> None:
    """``fusion_from_stage1: true`` on a variant is the config key ``model.fusion_from_stage1``."""
    from training.train_config import resolve_config_path

    raw = yaml.safe_load(resolve_config_path('ablate_fair').read_text())
    for item in raw['variants']:
        if 'model.fusion_from_stage1=true' in item.get('set', []):
            item['set'].remove('model.fusion_from_stage1=true')
            item['fusion_from_stage1'] = True
    path = tmp_path / 'old.yaml'
    path.write_text(yaml.safe_dump(raw))
    control, = [v for v in load_preset(str(path)).variants
                if 'model.fusion_from_stage1=true' in v.train]
    assert control.key == 'cross_attention_stage1'
