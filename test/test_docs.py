"""The README, the CHANGELOG and docs/ say true things about the repository.

Every relative link points at a file that exists, every repository path named in backticks
exists, every project command in a shell block exists and accepts every option the page gives
it, the node's parameter table is the one generated from the declarations, and the README
stays a front door (at most 300 lines).
"""

from __future__ import annotations

import contextlib
import importlib
import io
from pathlib import Path
import re
import shlex

import pytest

from convitac_ros.ros import parameter_docs

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / 'README.md', ROOT / 'CHANGELOG.md', *(ROOT / 'docs').rglob('*.md'),
                *(ROOT / 'models').glob('*.md')])
# Folders of the repository whose paths the pages name; others (runs/, data/, bags/) are outputs.
TRACKED = ('docs/', 'training/', 'convitac_ros/', 'config/', 'scripts/', 'test/', 'models/',
           'benchmarks/', 'launch/', 'tools/')
CONSOLE = {
    'convitac_make_bag': 'convitac_ros.bags.make_bag',
    'convitac_replay': 'convitac_ros.bags.replay',
    'convitac_evaluate': 'convitac_ros.evaluation.offline',
    'convitac_export': 'convitac_ros.export',
    'convitac_label': 'convitac_ros.bags.contact_episodes',
    'convitac_make_dataset': 'convitac_ros.bags.make_dataset',
}
MODULES = {'benchmarks': 'benchmarks.runner'}


def _relative(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _links(text: str) -> list[str]:
    return [target for target in re.findall(r'\]\(([^)\s]+)\)', text)
            if not re.match(r'[a-z]+:', target) and not target.startswith('#')]


@pytest.mark.parametrize('page', PAGES, ids=_relative)
def test_every_relative_link_of_a_page_points_at_a_file(page):
    missing = [target for target in _links(page.read_text())
               if not (page.parent / target.split('#')[0]).exists()]
    assert not missing, f'{_relative(page)} links to missing files: {missing}'


def _exists(name: str) -> bool:
    """A path of the repository, or ``module_file.attribute`` of one (``test/x.helper``)."""
    path = name.split(':')[0].split('#')[0]
    return (ROOT / path).exists() or (ROOT / f'{path.rsplit(".", 1)[0]}.py').is_file()


@pytest.mark.parametrize('page', PAGES, ids=_relative)
def test_every_repository_path_a_page_names_exists(page):
    names = re.findall(r'`([^`\s]+)`', page.read_text())
    paths = {name.rstrip('.,:') for name in names
             if name.startswith(TRACKED) and not re.search(r'[<>*{}$|]', name)}
    missing = sorted(path for path in paths if not _exists(path))
    assert not missing, f'{_relative(page)} names paths that do not exist: {missing}'


def _shell_lines(text: str) -> list[str]:
    """Commands of the page's bash blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r'```(?:bash|sh)\n(.*?)```', text, re.S):
        joined = re.sub(r'\\\n\s*', ' ', block)
        for line in joined.splitlines():
            line = re.sub(r'(^|\s)#.*$', '', line).strip()
            lines.extend(part.strip() for part in re.split(r'&&|;|\|\||(?<![|])\|(?!\|)|&$',
                                                           line) if part.strip())
    return lines


def _command(line: str) -> tuple[str, list[str]] | None:
    """(how to reach the command, its arguments), or None for commands not the project's."""
    try:
        words = shlex.split(line.replace('$T', '').replace('$(', '').replace(')', ''))
    except ValueError:
        return None
    while words and re.match(r'^[A-Z_]+=', words[0]):
        words.pop(0)
    if words and words[0] in ('nice', 'exec', 'time'):
        words.pop(0)
    if not words:
        return None
    head = words[0].rsplit('/', 1)[-1] if words[0].startswith('.venv/') else words[0]
    if head in CONSOLE:
        return f'module:{CONSOLE[head]}', words[1:]
    if head == 'torchrun':
        scripts = [i for i, word in enumerate(words) if word.endswith('.py')]
        words = ['python', *words[scripts[0]:]] if scripts else []
        head = 'python'
    if head in ('python', 'python3') and len(words) > 1:
        if words[1] == '-m' and len(words) > 2:
            return f'module:{MODULES.get(words[2], words[2])}', words[3:]
        if words[1].endswith('.py'):
            return f'file:{words[1]}', words[2:]
    if head.startswith('scripts/'):
        return f'file:{head}', words[1:]
    return None


def _help(target: str, positionals: list[str]) -> str | None:
    """The --help text of a project module's main(), or None when it has no main()."""
    kind, name = target.split(':', 1)
    if kind == 'file':
        if not name.startswith('training/') or not name.endswith('.py'):
            return None
        name = name[:-3].replace('/', '.')
    module = importlib.import_module(name)
    main = getattr(module, 'main', None)
    if main is None:
        return None
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            main([*positionals, '--help'])
    return out.getvalue()


def _commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in PAGES:
        for line in _shell_lines(page.read_text()):
            command = _command(line)
            if command is not None:
                found.append((_relative(page), *command))
    return found


def test_the_pages_name_project_commands():
    assert len(_commands()) > 20


def test_every_project_command_in_the_pages_exists_and_takes_its_options():
    helps: dict[tuple[str, tuple[str, ...]], str | None] = {}
    problems = []
    for page, target, args in _commands():
        kind, name = target.split(':', 1)
        if kind == 'file' and not (ROOT / name).is_file():
            problems.append(f'{page}: {name} does not exist')
            continue
        positionals = tuple(args[:1]) if name == 'benchmarks.runner' and args else ()
        key = (target, positionals)
        if key not in helps:
            helps[key] = _help(target, list(positionals))
        text = helps[key]
        if text is None:
            continue
        for option in (arg.split('=')[0] for arg in args if arg.startswith('--')):
            if option != '--ros-args' and option not in text:
                problems.append(f'{page}: {name} has no option {option}')
    assert not problems, '\n'.join(sorted(set(problems)))


def test_the_node_parameter_table_is_generated_from_the_declarations():
    text = parameter_docs.DOC.read_text()
    assert parameter_docs.replace_block(text, parameter_docs.render_table()) == text, (
        'docs/node.md is stale: python -m convitac_ros.ros.parameter_docs --write')


def test_the_parameter_table_names_every_declared_parameter():
    table = parameter_docs.render_table()
    for name in parameter_docs.SPECS:
        assert f'| `{name}` |' in table
    assert '| `inputs.<input>.crop` |' in table


def test_replace_block_refuses_a_page_without_markers():
    with pytest.raises(ValueError, match='block'):
        parameter_docs.replace_block('no markers here', 'table')


def test_the_readme_is_a_front_door_of_at_most_300_lines():
    assert len((ROOT / 'README.md').read_text().splitlines()) <= 300
