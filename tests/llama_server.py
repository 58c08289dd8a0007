"""Start llama.cpp's OpenAI-compatible server (PyPI llama-cpp-python[server]) with weight repacking off:
``python tests/llama_server.py --model X.gguf --model_alias NAME --host 127.0.0.1 --port P``, the arguments of
``python -m llama_cpp.server``.

llama.cpp repacks quantized weights into CPU-specific layouts ("extra buffer types"); built natively on
this VM's CPU (AVX-512, AMX) that path segfaults on the first prompt longer than one token (llama-cpp-python
0.3.36, SmolLM2's Q4_1 GGUF). The server has no switch for it, so this turns the model parameter
``use_extra_bufts`` off before the server loads the model; everything else is ``llama_cpp.server``'s own."""

import llama_cpp.llama_cpp as lib

_defaults = lib.llama_model_default_params


def _no_repacking():
    params = _defaults()
    params.use_extra_bufts = False
    return params


lib.llama_model_default_params = _no_repacking

if __name__ == "__main__":
    from llama_cpp.server.__main__ import main

    main()
