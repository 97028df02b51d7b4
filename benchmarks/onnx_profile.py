"""Where the CPU time goes, per operator type, in torch eager and in ONNX Runtime.

``python -m benchmarks.onnx_profile [--config paper] [--runs 4] [--threads 1]`` exports a randomly
initialised model of the configuration, runs the same inference graph in both runtimes on one
uint8 sample and prints the share of each operator type (ONNX Runtime's profiler, torch's
profiler), so that a speed-up or its absence can be explained by kernels rather than guessed.
"""

from __future__ import annotations

import argparse
from collections import Counter
import json
from pathlib import Path
import tempfile

import onnxruntime as ort
import torch
from torch.profiler import profile, ProfilerActivity

from convitac_ros.checkpoint import default_preprocess
from convitac_ros.export import export_model, InferenceGraph
from convitac_ros.model import ConViTac, ModelConfig
from convitac_ros.staging import InputSpec


def _table(title: str, seconds: Counter, runs: int, top: int = 8) -> str:
    total = sum(seconds.values())
    lines = [f'{title}: {1e3 * total / runs:.1f} ms per run',
             '| operator | ms per run | share |', '|---|---|---|']
    lines += [f'| {name} | {1e3 * value / runs:.1f} | {100 * value / total:.1f}% |'
              for name, value in seconds.most_common(top)]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print both breakdowns as markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default='paper', choices=('tiny', 'paper'))
    parser.add_argument('--runs', type=int, default=4)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = getattr(ModelConfig, args.config)()
    model = ConViTac(config).eval()
    preprocess = default_preprocess(config)
    heads = {head: [str(i) for i in range(size)] for head, size in config.heads}
    frames = InputSpec.from_record(preprocess).random_frames(1)

    data, _ = export_model(model, heads, preprocess)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = args.threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / 'ort')
        session = ort.InferenceSession(data, options, providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        session.run(None, {name: frames})  # warm-up (profiled too, then skipped below)
        for _ in range(args.runs):
            session.run(None, {name: frames})
        events = json.loads(Path(session.end_profiling()).read_text())
    kernel = [e for e in events
              if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time')]
    per_run = len(kernel) // (args.runs + 1)
    ort_seconds: Counter = Counter()
    for event in kernel[per_run:]:  # without the warm-up run
        ort_seconds[event['args']['op_name']] += event['dur'] / 1e6

    graph = InferenceGraph(model, heads, preprocess)
    sample = torch.from_numpy(frames)
    with torch.inference_mode():
        graph(sample)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(args.runs):
                graph(sample)
    torch_seconds: Counter = Counter({row.key: row.self_cpu_time_total / 1e6
                                      for row in profiler.key_averages()})
    print(f'{args.config} config, batch 1, {args.threads} thread(s), {args.runs} runs\n')
    print(_table('torch eager (self CPU time)', torch_seconds, args.runs))
    print()
    print(_table('ONNX Runtime (kernel time)', ort_seconds, args.runs))


if __name__ == '__main__':
    main()
