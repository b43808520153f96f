"""The course loads every data set and the pretrained text model with the network blocked."""

import subprocess
import sys
import textwrap


def test_data_and_model_load_with_sockets_blocked():
    code = textwrap.dedent("""
        import socket
        def blocked(*args, **kwargs):
            raise OSError("network access attempted while blocked")
        socket.socket.connect = blocked
        socket.socket.connect_ex = blocked
        socket.create_connection = blocked
        socket.getaddrinfo = blocked

        from mmcourse.data import (prepare, load_mnist, load_digits8, load_spoken_digits,
                                   load_reviews, load_av_digits, embed_texts)
        prepare(verbose=False)
        assert load_mnist()[0].shape == (5000, 28, 28)
        assert load_digits8()[0].shape == (1797, 8, 8)
        assert len(load_spoken_digits()[0]) == 3000
        assert len(load_reviews("polarity").texts) > 10000
        assert len(load_av_digits("test")) == 1000
        e = embed_texts(["a handwritten seven", "the digit seven", "a dull film"])
        sim = e @ e.T
        assert e.shape == (3, 384) and sim[0, 1] > sim[0, 2]
        print("offline ok")
    """)
    env_drop = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # the loader must not rely on them
    import os
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "offline ok" in run.stdout
