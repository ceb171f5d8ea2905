"""Models behind an OpenAI-compatible server: the engine (:mod:`.engine`), the logprob
shapes servers send, prompts and whole-text scoring over the completions API, llama.cpp's own
server started on loopback (:mod:`.native_server`) and a delay proxy in front of it (:mod:`.netem`)."""
