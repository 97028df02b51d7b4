"""Hostile and careless use of the command-line tools and training, kept as regression tests.

Every case was once a defect: an export over its own checkpoint, a dataset folder deleted that
the tool did not create, class names lost on the way through `category_reference.txt`,
tracebacks for unusable output paths and malformed labels files, a labels file scanned once per
frame, a NaN resume state that replaced a good `best.safetensors`, a corrupt state that ended in
a traceback, and a failed `--init-from` that blocked its retry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
import time

from hostile_checkpoints import DEMO
import pytest
from recording_helpers import write_recording
import torch
from torch import nn

from convitac_ros import export
from convitac_ros.bags import make_bag, make_dataset
from convitac_ros.bags.labels_file import LabelsError, read_labels, write_labels
from convitac_ros.data import build_dataset
from convitac_ros.evaluation import offline as evaluate
from training.distributed import DistContext
from training.engine import NonFiniteLossError, Trainer
from training.state import load_state, save_state, TrainingStateError
from training.train import cli as train_cli
from training.train_config import load_config, StageConfig

TOPICS = ['--camera-topic', '/cam/image_raw', '--tactile-topic', '/gel/image_raw']


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_error_line(capsys, *texts: str) -> str:
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    assert all(text in err for text in texts), err
    return err


# ------------------------------------------------------------------------------ export

def test_export_never_overwrites_its_checkpoint_even_with_force(tmp_path, capsys):
    checkpoint = tmp_path / 'in.safetensors'
    checkpoint.write_bytes(DEMO.read_bytes())
    before = digest(checkpoint)
    for extra in ([], ['--force']):
        assert export.main([str(checkpoint), '-o', str(checkpoint), *extra]) == 1
        one_error_line(capsys, 'is the input')
    assert digest(checkpoint) == before


@pytest.mark.parametrize('output,text', [
    ('folder', 'is a folder'), ('afile/x.onnx', 'is a file, not a folder'),
    ('afile', 'exists already'), ('/proc/x.onnx', 'cannot write into /proc')])
def test_export_refuses_an_unusable_output_in_one_line_before_any_work(
        tmp_path, capsys, output, text):
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'afile').write_text('mine')
    started = time.monotonic()
    assert export.main([str(DEMO), '-o', str(tmp_path / output)]) == 1
    one_error_line(capsys, text)
    assert time.monotonic() - started < 5  # refused before the export ran
    assert (tmp_path / 'afile').read_text() == 'mine'


@pytest.mark.parametrize('opset', ['500', '0', '16'])
def test_export_refuses_an_opset_out_of_range_in_one_line(tmp_path, capsys, opset):
    assert export.main([str(DEMO), '-o', str(tmp_path / 'x.onnx'), '--opset', opset]) == 1
    one_error_line(capsys, '--opset must be within')
    assert not (tmp_path / 'x.onnx').exists()


def test_export_replaces_an_earlier_export_only_with_force(tmp_path, capsys):
    output = tmp_path / 'model.onnx'
    output.write_bytes(b'an earlier export')
    assert export.main([str(DEMO), '-o', str(output), '--force']) == 0
    assert output.read_bytes() != b'an earlier export'
    assert not list(tmp_path.glob('.*.tmp'))


# ------------------------------------------------------------------------------ other tools

def test_make_bag_refuses_an_existing_output_and_a_path_under_a_file(tmp_path, capsys,
                                                                     synthetic_tag_root):
    (tmp_path / 'afile').write_text('mine')
    (tmp_path / 'bag').mkdir()
    for output, text in ((tmp_path / 'bag', 'exists already'),
                         (tmp_path / 'afile' / 'bag', 'is a file, not a folder')):
        assert make_bag.main(['--dataset', 'touch_and_go', '--root', str(synthetic_tag_root),
                              '-o', str(output), '--quiet']) == 1
        one_error_line(capsys, text)
    assert (tmp_path / 'afile').read_text() == 'mine' and (tmp_path / 'bag').is_dir()


def test_evaluate_keeps_an_earlier_report_unless_forced(tmp_path, capsys):
    (tmp_path / 'report.json').write_text('{"earlier": true}')
    args = evaluate.build_parser().parse_args(['bag', '--output-dir', str(tmp_path)])
    with pytest.raises(ValueError, match='holds a report already'):
        evaluate.run(args)
    assert json.loads((tmp_path / 'report.json').read_text()) == {'earlier': True}
    evaluate.check_output_dir(tmp_path, force=True)


@pytest.fixture(scope='module')
def recording(synthetic_tag_root, tmp_path_factory):
    world = build_dataset('touch_and_go', synthetic_tag_root, 'test')
    folder = tmp_path_factory.mktemp('recording')
    written = write_recording(folder / 'bag', [world[i] for i in range(3)], world.heads,
                              TOPICS[1], [TOPICS[3]])
    return folder / 'bag', written


def test_class_names_round_trip_through_labels_and_the_dataset_files(recording, tmp_path):
    bag, written = recording
    names = ['0: Wood', 'a,b "c" d', '7']
    labels = tmp_path / 'labels.csv'
    write_labels(labels, ['material'], [(start, end, {'material': name}) for
                                        (start, end, _), name in zip(written.rows, names)])
    assert [row.labels['material'] for row in read_labels(labels).rows] == names
    out = tmp_path / 'dataset'
    make_dataset.make_dataset([bag], [labels], out, camera_topic=TOPICS[1],
                              tactile_topic=TOPICS[3], progress=False)
    assert build_dataset('touch_and_go', out, 'train').heads['material'] == names
    quoted = tmp_path / 'quoted.csv'
    write_labels(quoted, ['material'], [(s, e, {'material': '"wood"'}) for s, e, _ in
                                        written.rows])
    with pytest.raises(LabelsError, match='cannot be kept in category_reference.txt'):
        make_dataset.make_dataset([bag], [quoted], tmp_path / 'refused', camera_topic=TOPICS[1],
                                  tactile_topic=TOPICS[3], progress=False)
    assert not (tmp_path / 'refused').exists()


def test_make_dataset_never_deletes_a_folder_that_appeared_while_it_read_labels(
        recording, tmp_path, monkeypatch, capsys):
    bag, written = recording
    labels = tmp_path / 'labels.csv'
    write_labels(labels, ['material'], [(s, e, {'material': 'wood'}) for s, e, _ in written.rows])
    out = tmp_path / 'dataset'
    real_read = make_dataset.read_labels

    def read_while_someone_writes(path):
        out.mkdir(exist_ok=True)
        (out / 'theirs.txt').write_text('not yours')
        return real_read(path)

    monkeypatch.setattr(make_dataset, 'read_labels', read_while_someone_writes)
    assert make_dataset.main([str(bag), '--labels', str(labels), '-o', str(out), '--quiet',
                              *TOPICS]) == 1
    one_error_line(capsys, 'exists already')
    assert (out / 'theirs.txt').read_text() == 'not yours'


# ------------------------------------------------------------------------------ labels files

@pytest.mark.parametrize('text,message', [
    ('start,end,material\n1,2,"wo\nod"\n', 'a quoted cell must close on its line'),
    ('start,end,material\n1e308,1e308,wood\n', 'must be a time from 0 to'),
    ('start,end,material\n0,1,' + 'x' * 300_000 + '\n', 'line of 300004 characters'),
    ('start,end,material\n0,1,"' + 'x' * 300 + '"\n', 'is not a class name'),
    ('start,end,material\n0,inf,wood\n', 'must be a time from 0 to'),
])
def test_a_malformed_labels_file_is_one_line_naming_the_line(tmp_path, text, message):
    path = tmp_path / 'labels.csv'
    path.write_text(text)
    with pytest.raises(LabelsError, match=message) as caught:
        read_labels(path)
    assert f'{path}:2' in str(caught.value) and '\n' not in str(caught.value)


def test_a_labels_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / 'excel.csv'
    path.write_bytes('start,end,material\r\n0.5,1.5,wood\r\n'.encode('utf-8-sig'))
    labels = read_labels(path)
    assert labels.heads == ('material',) and labels.rows[0].labels == {'material': 'wood'}


def test_rows_are_found_by_bisection_in_a_large_labels_file(tmp_path):
    path = tmp_path / 'many.csv'
    path.write_text('start,end,material\n' + ''.join(
        f'{i * 0.01:.3f},{i * 0.01 + 0.005:.3f},m{i % 7}\n' for i in range(100_000)))
    labels = read_labels(path)
    started = time.monotonic()
    for i in range(0, 100_000, 10):
        assert labels.row_at(round((i * 0.01 + 0.002) * 1e9)).labels == {'material':
                                                                         f'm{i % 7}'}
        assert labels.row_at(round((i * 0.01 + 0.007) * 1e9)) is None
    assert time.monotonic() - started < 2.0  # a scan per look-up took minutes


# ------------------------------------------------------------------------------ training

class ToyTask:
    name, best_metric, best_mode = 'toy', 'loss', 'min'

    def __init__(self, diverge_at_epoch: int | None = None) -> None:
        self.diverge_at_epoch, self.validations = diverge_at_epoch, 0

    def train_mode(self, model: nn.Module) -> None:
        model.train()

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return ((model(batch) - 2 * batch) ** 2).mean(), {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        self.validations += 1
        return {'loss': 1.0 / self.validations}  # every epoch looks better

    def export(self, model: nn.Module, path: Path, summary: dict) -> None:
        path.write_text(json.dumps({'weight': model.weight.item()}))


def toy_trainer(run_dir: Path, task: ToyTask, epochs: int = 2) -> Trainer:
    config = load_config('demo', ['runtime.progress=false'])
    data = [torch.tensor([float(i)]) for i in range(8)]
    stage = StageConfig(epochs=epochs, batch_size=2, lr=0.01, grad_clip=0.0)
    return Trainer(run_dir, nn.Linear(1, 1, bias=False), task, data,
                   lambda items: torch.stack([item for item, _ in items]), stage,
                   config.runtime, DistContext(device=torch.device('cpu')))


def test_a_resume_state_with_nan_weights_is_refused_and_best_is_kept(tmp_path):
    trainer = toy_trainer(tmp_path, ToyTask(), epochs=1)
    trainer.fit()
    best = (tmp_path / 'best.safetensors').read_text()
    state = load_state(trainer.state_path)
    state['model']['weight'].fill_(float('nan'))
    state['progress']['finished'] = False
    save_state(trainer.state_path, state)
    with pytest.raises(TrainingStateError, match='non-finite weights') as caught:
        toy_trainer(tmp_path, ToyTask(), epochs=2).fit(resume=True)
    assert '\n' not in str(caught.value)
    assert (tmp_path / 'best.safetensors').read_text() == best


def test_weights_that_became_non_finite_never_replace_best_or_last(tmp_path):
    trainer = toy_trainer(tmp_path, ToyTask(), epochs=2)
    real_end = trainer._end_epoch

    def diverge_after_first_epoch(*args):
        if trainer.progress.epoch >= 1:  # the first epoch exported finite best and last
            with torch.no_grad():
                trainer.model.weight.fill_(float('inf'))
        real_end(*args)

    trainer._end_epoch = diverge_after_first_epoch
    with pytest.raises(NonFiniteLossError, match='were not replaced'):
        trainer.fit()
    for name in ('best.safetensors', 'last.safetensors'):
        assert torch.isfinite(torch.tensor(
            json.loads((tmp_path / name).read_text())['weight']))


@pytest.mark.parametrize('content', [b'not a state', b''])
def test_a_corrupt_resume_state_is_one_line(tmp_path, content):
    trainer = toy_trainer(tmp_path, ToyTask(), epochs=1)
    trainer.state_path.parent.mkdir(parents=True, exist_ok=True)
    trainer.state_path.write_bytes(content)
    with pytest.raises(TrainingStateError) as caught:
        trainer.fit(resume=True)
    assert str(trainer.state_path) in str(caught.value) and '\n' not in str(caught.value)


def test_a_failed_init_from_leaves_nothing_that_blocks_the_retry(
        synthetic_tag_root, tmp_path, capsys):
    bad = tmp_path / 'bad.safetensors'
    bad.write_bytes(b'not a checkpoint')
    run_dir = tmp_path / 'run'
    args = ['--config', 'demo', '--data-root', str(synthetic_tag_root), '--run-dir',
            str(run_dir), '--device', 'cpu', '--no-progress', '--init-from', str(bad)]
    for _ in range(2):  # the retry meets the same error, not 'already holds a run'
        assert train_cli(args) == 2
        one_error_line(capsys, 'bad.safetensors')
    assert not (run_dir / 'config.yaml').exists()


@pytest.mark.parametrize('where', ['afile', 'afile/run'])
def test_a_run_dir_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, where):
    (tmp_path / 'afile').write_text('mine')
    assert train_cli(['--config', 'demo', '--run-dir', str(tmp_path / where), '--device',
                      'cpu']) == 2
    one_error_line(capsys, 'not a folder')
    assert (tmp_path / 'afile').read_text() == 'mine'
