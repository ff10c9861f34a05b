"""Renders chat templates the way Hugging Face transformers does, as the reference for Troupe's.

transformers renders a tokenizer's chat_template with jinja2's ImmutableSandboxedEnvironment
(trim_blocks, lstrip_blocks), the variables messages, add_generation_prompt and the special
tokens, and a raise_exception global. This script does the same for every case in a JSON file
and prints one result per (case, conversation, add_generation_prompt): {"text": ...} or
{"error": true} when the template raises or cannot be parsed.

Usage: python3 chat_template_reference.py cases.json > expected.json
"""

import json
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def render_all(cases):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = tojson
    results = []
    for case in cases:
        try:
            template = env.from_string(case["template"])
        except jinja2.exceptions.TemplateError:
            template = None
        for conversation in case["conversations"]:
            for add_generation_prompt in (False, True):
                if template is None:
                    results.append({"error": True})
                    continue
                try:
                    text = template.render(messages=conversation,
                                           add_generation_prompt=add_generation_prompt,
                                           **case.get("special_tokens", {}))
                    results.append({"text": text})
                except jinja2.exceptions.TemplateError:
                    results.append({"error": True})
    return results


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    json.dump(render_all(cases), sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
