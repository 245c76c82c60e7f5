import sys, json, numpy as np, torch
torch.set_num_threads(2)
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.refine.object import refine_object, ObjectRefineSettings
from ptychopinn.metrics import evaluate
amp, ph, nph = sys.argv[1], sys.argv[2], float(sys.argv[3])
configs = json.loads(sys.argv[4])
d = simulate_dataset(N=64, object_size=256, nphotons=nph, seed=1, object_seed=1001, object_amplitude=amp, object_phase=ph)
ekw = dict(xcoords=d.xcoords, ycoords=d.ycoords, N=d.N)
for s in configs:
    ep = s.pop("epochs", 50)
    st = ObjectRefineSettings(epochs=ep, **s)
    out = []
    def cb(e, get, sec):
        if e in (2,5,10,20,50,100,200):
            m = evaluate(get(), d.object, **ekw); out.append((e, round(sec,1), round(m["amp_ssim"],3), round(m["phase_ssim"],3)))
    r = refine_object(np.ones(d.object.shape, np.complex64), d.probe, d.diffraction, d.coords, st, on_epoch=cb)
    print(s, out, flush=True)
