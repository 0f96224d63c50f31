"""Models by name: the bundled offline models (`bundled`), GGUF -> safetensors conversion
(`gguf`) and how cache keys name a model (`identity`)."""
