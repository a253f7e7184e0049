"""Runs documentation examples as a user would: ``python tests/run_examples.py FILE...``.

For a Markdown file, its ```python blocks run in order in one namespace (a page reads top to
bottom); for a Python module, each docstring's ``Example::`` block runs in a fresh namespace, and
``>>>`` examples run through doctest. Prints ``ok <where>`` per example; the first failure raises
with its place named.
"""
import ast
import doctest
import os
import re
import sys
import textwrap


def markdown_blocks(path):
    text = open(path).read()
    for i, m in enumerate(re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M), 1):
        yield f"{path} block {i} (line {text[:m.start()].count(chr(10)) + 1})", m.group(1)


def docstring_examples(path):
    tree = ast.parse(open(path).read())
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
    for node in nodes:
        doc = ast.get_docstring(node, clean=True)
        if not doc or "Example::" not in doc:
            continue
        block = []
        for line in doc.split("Example::", 1)[1].split("\n")[1:]:
            if line.strip() and not line.startswith("    "):
                break
            block.append(line)
        yield f"{path}:{getattr(node, 'name', '<module>')}", textwrap.dedent("\n".join(block)).strip()


def run(where, code, namespace):
    if code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(code, namespace, where, where, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        if runner.failures:
            raise AssertionError(f"{where}: {runner.failures} doctest failure(s)")
    else:
        exec(compile(code, where, "exec"), namespace)
    print(f"ok {where}", flush=True)


def module_name(path):
    """``pkg.sub.mod`` of a file inside packages (folders with an ``__init__.py``)."""
    path = os.path.abspath(path)[:-3]
    parts, folder = [os.path.basename(path)], os.path.dirname(path)
    while os.path.exists(os.path.join(folder, "__init__.py")):
        parts.append(os.path.basename(folder))
        folder = os.path.dirname(folder)
    return ".".join(reversed(parts))


def main(paths):
    for path in paths:
        if path.endswith(".md"):
            namespace = {"__name__": "__main__"}
            for where, code in markdown_blocks(path):
                run(where, code, namespace)
        else:
            module = module_name(path)
            for where, code in docstring_examples(path):
                namespace = {"__name__": "__main__"}
                exec(f"from {module} import *", namespace)   # doctests use the module's names
                run(where, code, namespace)


if __name__ == "__main__":
    main(sys.argv[1:])
