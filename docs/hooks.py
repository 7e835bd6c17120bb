"""MkDocs hook: the repository files the docs link to join the site, so every link resolves.

The pages link as GitHub reads them (`../README.md`, `../bench/results.md#...`). Each file
outside `docs/` that a page links to (and each file those link to in turn) is built into the
site at `repo/<its path in the repository>`: Markdown as a page (the nav may leave it out),
anything else copied as is.
Each page's relative links are rewritten to those places before MkDocs reads them, so strict
mode checks every link and anchor. A link to no file of the repository is left as written, for
MkDocs to report.
"""

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File
from mkdocs.structure.files import Files
from mkdocs.structure.files import InclusionLevel
from mkdocs.structure.pages import Page

# Where the files from outside docs_dir go in the site.
PREFIX = "repo"
# The path of an inline link or image, `](path`, up to its anchor, query, title or `)`.
_LINK = re.compile(r"(?<=\]\()[^)\s#?]+")


def _root(config: MkDocsConfig) -> Path:
    """The repository: the directory that holds mkdocs.yml."""
    return Path(config.config_file_path).resolve().parent


def _docs(config: MkDocsConfig) -> str:
    """docs_dir as a path from the repository root, e.g. `docs`."""
    return Path(config.docs_dir).resolve().relative_to(_root(config)).as_posix()


def _repo_path(src_uri: str, config: MkDocsConfig) -> str:
    """Where the site file `src_uri` lives in the repository."""
    if src_uri.startswith(PREFIX + "/"):
        return src_uri.removeprefix(PREFIX + "/")
    return posixpath.join(_docs(config), src_uri)


def _site_uri(repo_path: str, config: MkDocsConfig) -> str:
    """Where the repository file `repo_path` lives in the site."""
    docs = _docs(config) + "/"
    if repo_path.startswith(docs):
        return repo_path.removeprefix(docs)
    return posixpath.join(PREFIX, repo_path)


def _targets(src_uri: str, markdown: str, config: MkDocsConfig) -> Iterator[tuple[str, str]]:
    """Each relative link of a page that names a file of the repository, with that file's path.

    Links with a scheme or a host, absolute paths, anchors alone, paths leaving the repository
    and paths to no file are not yielded.
    """
    root = _root(config)
    for link in set(_LINK.findall(markdown)):
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or link.startswith("/"):
            continue
        base = posixpath.dirname(_repo_path(src_uri, config))
        path = posixpath.normpath(posixpath.join(base, link))
        if not path.startswith("../") and (root / path).is_file():
            yield link, path


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add each repository file outside docs_dir that a page links to, transitively."""
    queue = list(files.documentation_pages())
    while queue:
        file = queue.pop()
        for _, path in _targets(file.src_uri, file.content_string, config):
            site_uri = _site_uri(path, config)
            if files.get_file_from_path(site_uri) is None:
                abs_path = str(_root(config) / path)
                added = File.generated(
                    config, site_uri, abs_src_path=abs_path, inclusion=InclusionLevel.NOT_IN_NAV
                )
                files.append(added)
                if added.is_documentation_page():
                    queue.append(added)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point each link to a repository file at that file's place in the site."""
    here = posixpath.dirname(page.file.src_uri) or "."
    moved = {
        link: posixpath.relpath(_site_uri(path, config), here)
        for link, path in _targets(page.file.src_uri, markdown, config)
    }
    return _LINK.sub(lambda match: moved.get(match[0], match[0]), markdown)
