"""Teachers: configuration (`config`), prompts, backends (transformers, vLLM, OpenAI-compatible
servers, llama.cpp), the durable response cache, the reasoning split, and the engine that
turns a problem frame into cached, budgeted completions (`engine.Engine`). Shared by
`generate`, `rewrite_traces` and evals; importing it loads no heavy library."""
