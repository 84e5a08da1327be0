#!/usr/bin/python3
"""Loads a page in headless Chromium, waits until a JavaScript condition
holds (the page's scripts have rendered), then writes the DOM and a PNG
screenshot. Drives Chromium over the DevTools protocol because --dump-dom
never returns while the page holds a Server-Sent Events stream open.

usage: cdp_snapshot.py URL DOM_OUT PNG_OUT READY_JS [TIMEOUT_S]
"""
import base64, json, re, subprocess, sys, tempfile, time, urllib.request

import websocket  # Debian python3-websocket

url, dom_out, png_out, ready_js = sys.argv[1:5]
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
profile = tempfile.mkdtemp(prefix="cdp-")
browser = subprocess.Popen(
    ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
     "--no-first-run", "--window-size=1280,900", "--remote-debugging-port=0",
     "--user-data-dir=" + profile, url],
    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    deadline = time.time() + timeout
    port = None
    while port is None:
        line = browser.stderr.readline()
        if not line and browser.poll() is not None:
            sys.exit("chromium exited before listening")
        m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if m:
            port = int(m.group(1))
        if time.time() > deadline:
            sys.exit("chromium did not open its DevTools port")
    page = None
    while page is None:
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port))
        page = next((t for t in targets if t.get("type") == "page"), None)
        if time.time() > deadline:
            sys.exit("no page target")
        time.sleep(0.1)
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout)
    seq = [0]

    def call(method, **params):
        seq[0] += 1
        ws.send(json.dumps({"id": seq[0], "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("id") == seq[0]:
                if "error" in msg:
                    sys.exit("%s: %s" % (method, msg["error"]))
                return msg["result"]

    def evaluate(expr):
        r = call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    while not evaluate("(() => { try { return !!(%s); } catch (e) { return false; } })()" % ready_js):
        if time.time() > deadline:
            sys.exit("page not ready within %ss: %s" % (timeout, ready_js))
        time.sleep(0.2)
    with open(dom_out, "w") as f:
        f.write(evaluate("document.documentElement.outerHTML"))
    shot = call("Page.captureScreenshot", format="png")
    with open(png_out, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
finally:
    browser.kill()
    browser.wait()
