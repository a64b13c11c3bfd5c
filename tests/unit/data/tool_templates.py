"""Chat templates with native tool support, written for chatforge's tests in the style of two families:

HERMES  ChatML with tools in the system turn, `<tool_call>{json}</tool_call>` in the assistant turn and tool
        results as `<tool_response>` blocks inside one user turn (the Qwen2.5 / Hermes / SmolLM3 layout).
LLAMA31 Llama-3.1 headers, tools as JSON in the system turn, a call written as the bare JSON object
        {"name", "parameters"} and results in an `ipython` turn.
"""

HERMES = r"""
{%- if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% else %}{% set sys = 'You are a helpful assistant.' %}{% endif %}
{%- if tools %}
{{- '<|im_start|>system\n' + sys + '\n\n# Tools\n\n<tools>' }}
{%- for t in tools %}{{- '\n' + (t | tojson) }}{% endfor %}
{{- '\n</tools>\n\nFor each call return <tool_call>\n{"name": <name>, "arguments": <args>}\n</tool_call><|im_end|>\n' }}
{%- else %}
{{- '<|im_start|>system\n' + sys + '<|im_end|>\n' }}
{%- endif %}
{%- for m in messages %}
{%- if m.role == 'user' or (m.role == 'assistant' and not m.tool_calls) %}
{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' }}
{%- elif m.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if m.content %}{{- '\n' + m.content }}{% endif %}
{%- for c in m.tool_calls %}
{{- '\n<tool_call>\n{"name": "' + c.function.name + '", "arguments": ' + (c.function.arguments | tojson) + '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif m.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{% endif %}
{{- '\n<tool_response>\n' + m.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{% endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{% endif %}
"""

LLAMA31 = r"""
{{- bos_token }}
{%- if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% set rest = messages[1:] %}{% else %}{% set sys = '' %}{% set rest = messages %}{% endif %}
{{- '<|start_header_id|>system<|end_header_id|>\n\n' }}
{%- if tools %}
{{- 'Answer a call as JSON {"name": function name, "parameters": arguments}.\n\n' }}
{%- for t in tools %}{{- (t | tojson(indent=4)) + '\n\n' }}{% endfor %}
{%- endif %}
{{- sys + '<|eot_id|>' }}
{%- for m in rest %}
{%- if m.role == 'assistant' and m.tool_calls %}
{%- set c = m.tool_calls[0].function %}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "' + c.name + '", "parameters": ' + (c.arguments | tojson) + '}<|eot_id|>' }}
{%- elif m.role == 'tool' %}
{{- '<|start_header_id|>ipython<|end_header_id|>\n\n' + m.content + '<|eot_id|>' }}
{%- else %}
{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\n\n' + m.content + '<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
"""
