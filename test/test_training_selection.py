"""Model selection and reports: holdouts, balanced accuracy, macro-F1, optimizer, retrieval."""

import numpy as np
import pytest
import torch

from convitac_ros.data import TouchAndGo
from convitac_ros.data.synthetic import make_synthetic
from convitac_ros.model import ConViTac, ModelConfig
from training.data import BatchCollator, frame_keys, holdout_groups, train_and_val
from training.optim import build_optimizer
from training.predictions import balanced_accuracy, head_accuracies, macro_f1
from training.retrieval import hits_at, RetrievalProbe
from training.train_config import DataConfig, StageConfig

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_holdout_takes_whole_sessions_of_the_synthetic_world(tmp_path):
    make_synthetic(tmp_path, 'touch_and_go', 300, seed=0)
    data = DataConfig(dataset='touch_and_go', root=str(tmp_path), val_fraction=0.2)
    train, val = train_and_val(data, seed=1)
    sessions = {name: set(TouchAndGo(tmp_path, 'train').group_array()[subset.indices])
                for name, subset in (('train', train), ('val', val))}
    assert sessions['val'] and not sessions['train'] & sessions['val']
    assert len(sessions['val']) == round(0.2 * len(sessions['train'] | sessions['val']))
    assert len(train) + len(val) == len(TouchAndGo(tmp_path, 'train'))


def test_stage1_learns_from_every_training_frame_but_the_held_out_sessions(tmp_path):
    from fixtures_data import frame_name, TAG_SESSIONS, write_touch_and_go

    from convitac_ros.data.files import DataError
    from training.data import stage1_frames
    root = write_touch_and_go(tmp_path / 'tag')
    s1 = TAG_SESSIONS[1]
    data = DataConfig(dataset='touch_and_go', root=str(root), val_fraction=0.5)
    for seed in range(4):
        train, val = train_and_val(data, seed)
        held = {session for session, _ in frame_keys(val)}
        frames = frame_keys(stage1_frames(data, train, val))
        assert set(frame_keys(train)) <= set(frames)  # every labelled training frame ...
        assert not held & {session for session, _ in frames}  # ... and none held out
        # (S1, 3) is labelled in label.txt but in no split: stage 1 takes it, stage 2 cannot.
        assert ((s1, frame_name(3)) in frames) == (s1 not in held)
    data.stage1_frames = 'labelled'
    assert stage1_frames(data, train, val) is train
    data.stage1_frames = 'some'
    with pytest.raises(DataError, match='stage1_frames must be one of'):
        stage1_frames(data, train, val)


def test_group_holdout_never_empties_a_side():
    kept, held = holdout_groups(np.array(['a', 'a', 'b']), fraction=0.9, seed=0)
    assert kept and held and not set(kept) & set(held)
    with pytest.raises(ValueError, match='at least 2'):
        holdout_groups(np.array(['a', 'a']), 0.5, 0)


def test_balanced_accuracy_and_macro_f1_see_through_an_imbalanced_majority():
    target = np.array([0] * 90 + [1] * 10)
    always_zero = np.zeros(100, dtype=np.int64)
    assert balanced_accuracy(always_zero, target) == 0.5
    assert macro_f1(always_zero, target) == pytest.approx((2 * 90 / 190 + 0.0) / 2)
    perfect = target.copy()
    assert balanced_accuracy(perfect, target) == macro_f1(perfect, target) == 1.0
    labelled = np.array([0, 1, -1])
    assert balanced_accuracy(np.array([0, 0, 1]), labelled) == 0.5  # -1 is not labelled
    report = head_accuracies({'material': (always_zero, target)})
    assert report['accuracy/material'] == 0.9 and report['balanced_accuracy/material'] == 0.5


def test_weight_decay_spares_norms_biases_and_embeddings_and_backbones_get_their_lr():
    model = ConViTac(ModelConfig.tiny(fusion='cross_attention'))
    stage = StageConfig(lr=1e-3, backbone_lr=1e-4, weight_decay=0.05)
    optimizer = build_optimizer(model.named_parameters(), stage)
    group_of = {id(p): group for group in optimizer.param_groups for p in group['params']}
    names = dict(model.named_parameters())
    for name, parameter in names.items():
        group = group_of[id(parameter)]
        no_decay = (parameter.ndim < 2 or name.endswith(('cls_token', 'pos_embed', 'time_embed',
                                                         'stream_embed', 'query_embed')))
        assert group['weight_decay'] == (0.0 if no_decay else 0.05), name
        assert group['lr'] == (1e-4 if '.backbone.' in name else 1e-3), name
    for name in ('fusion.query_embed', 'visual_encoder.tokenizer.backbone.pos_embed',
                 'visual_encoder.tokenizer.backbone.cls_token', 'fusion.norm.weight',
                 'heads.classifiers.material.bias'):
        assert group_of[id(names[name])]['weight_decay'] == 0.0, name
    assert group_of[id(names['fusion.blocks.0.attn.to_q.weight'])]['weight_decay'] == 0.05
    assert sum(len(g['params']) for g in optimizer.param_groups) == len(names)


def test_hits_count_the_own_tactile_frame_among_the_first_k():
    tactile = torch.eye(4)
    visual = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0.9, 0], [0, 0, 0, 1]])
    assert hits_at(visual, tactile, 1).tolist() == [True, False, False, True]
    assert hits_at(visual, tactile, 2).tolist() == [True, True, True, True]  # ties: a hit


def test_probe_reports_chance_and_no_ceiling(tmp_path):
    make_synthetic(tmp_path, 'touch_and_go', 150, seed=0)
    dataset = TouchAndGo(tmp_path, 'train')
    probe = RetrievalProbe(dataset, 16, BatchCollator(32, MEAN, STD, None, pairs=True), seed=0,
                           root=tmp_path)

    def oracle(visual, tactile):  # embeds the pixels: every pair is found
        return torch.cat([visual, visual]).flatten(1)

    values = probe(oracle, torch.device('cpu'), 0.1)
    assert values['retrieval_top1'] == 1.0 and values['chance_top1'] == 1 / 16
    assert values['chance_top5'] == 5 / 16
    # The synthetic world's observer is not an upper bound (press depth is shared): not reported.
    assert not any(key.startswith('ceiling') for key in values)


def test_a_stage_1_that_never_took_off_is_reported(capsys):
    from training.pretrain import warn_if_not_aligned
    assert warn_if_not_aligned({'retrieval_top1': 0.05, 'chance_top1': 1 / 32})
    line = capsys.readouterr().err.strip()
    assert 'did not learn to align' in line and '5.0%' in line and '\n' not in line
    assert not warn_if_not_aligned({'retrieval_top1': 0.43, 'chance_top1': 1 / 32})
    assert not warn_if_not_aligned({'loss': 4.0})  # no retrieval measured: nothing to say
    assert capsys.readouterr().err == ''


def test_probe_averages_over_fixed_batchings_of_pairs_embedded_once(tmp_path):
    make_synthetic(tmp_path, 'touch_and_go', 150, seed=0)
    dataset = TouchAndGo(tmp_path, 'train')
    collate = BatchCollator(32, MEAN, STD, None, pairs=True)
    calls = []

    def noisy(visual, tactile):  # a weak alignment: one pair in a few is found
        calls.append(len(visual))
        generator = torch.Generator().manual_seed(int(1000 * float(visual.mean()) % 1000))
        return torch.cat([visual.mean(dim=(2, 3)), tactile.mean(dim=(2, 3))]) + \
            torch.randn(2 * len(visual), 3, generator=generator)

    once = RetrievalProbe(dataset, 16, collate, seed=0, repeats=1)
    many = RetrievalProbe(dataset, 16, collate, seed=0, repeats=20)
    assert [len(b) for b in many.batchings] == [len(dataset) // 16 * 16] * 20
    assert np.array_equal(once.batchings[0], many.batchings[0])  # the same first batching
    calls.clear()
    first = many(noisy, torch.device('cpu'), 0.1)
    assert sum(calls) == len(dataset)  # every pair embedded once, whatever the repeats
    assert first == many(noisy, torch.device('cpu'), 0.1)  # fixed batchings: reproducible
    assert 0.0 <= first['retrieval_top1'] <= 1.0
