for r in 1 2 3; do
 for m in 0.1 0.08; do
  .venv/bin/python -c "
import sys
import moodstream.worker.onnx_classify as c
c.CONFIRM_MARGINS['int8'] = $m
from moodstream.cli import main
sys.argv = ['moodstream', 'bench', 'profile', '--videos', '../shared/data/videos', '--device', 'cpu', '--frames', '8', '--backend', 'openvino', '--out', '/tmp/ab/p_${m}_$r.json']
main()
" > /dev/null 2>&1 || echo fail $m $r
 done
done
