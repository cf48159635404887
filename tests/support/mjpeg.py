"""A real MJPEG stream over HTTP on 127.0.0.1 that drops after each burst of frames (the live-source tests)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

FRAMES_PER_CONNECTION = 12


class MJPEGHandler(BaseHTTPRequestHandler):
    """multipart/x-mixed-replace JPEG frames, then the connection closes (a drop)."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(FRAMES_PER_CONNECTION):
            img = np.full((48, 64, 3), 20 * i % 255, np.uint8)
            jpg = cv2.imencode(".jpg", img)[1].tobytes()
            try:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                 + jpg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return
            time.sleep(0.005)

    def log_message(self, *args):
        pass


def serve(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), MJPEGHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
