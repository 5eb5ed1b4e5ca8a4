// The "Distil a solver" panel: learns a BNS solver for the model in view, in a worker of its own
// (lib/distill-worker.js), so that the page keeps generating meanwhile. It shows the ground
// truth's progress, then the validation PSNR per iteration against the classical solvers at the
// same NFE (horizontal lines), and when done hands the solver to the page's solver menu (marked
// as yours) and offers it as a file: an ordinary solver file bound to the model's id, which
// `bns sample` and `bns solver measure` accept. Nothing leaves the browser. A model whose
// network has no vector–Jacobian product in the runtime (the U-Net) gets no Distil button but a
// sentence saying so and pointing to `bns distill`.

const $ = (id) => document.getElementById(id);

/** Classical solvers drawn as lines (the best of all is added when it is another). */
const LINES = ['euler-uniform', 'midpoint-uniform'];
/** The defaults per kind of data: 2-D points train fast; images take longer per pair. */
const DEFAULTS = {
  points: { train: 384, validation: 128, iterations: 1000 },
  images: { train: 256, validation: 128, iterations: 250 },
};

/**
 * Wires the panel. `current()` gives the model in view ({ name, title, spec, bytes, modelId });
 * `addSolver(text, name)` puts a finished solver in the page's menu; `state` (an object the tests
 * read) is kept up to date.
 */
export function setUpDistill({ current, addSolver, state }) {
  let worker = null;
  let run = null;
  /** Whether the model in view is unconditional (no guidance to choose). */
  let unconditional = false;
  /** Why the model in view cannot be distilled here (null: it can). */
  let refusal = null;
  const form = $('distill-form');

  const reset = () => {
    Object.assign(state, { status: 'idle', curve: [], train: [], baselines: [], init: null, truth: null, seconds: null, solverText: null, error: null });
  };
  reset();

  const setRunning = (running) => {
    $('distill-start').disabled = running || refusal !== null;
    $('distill-cancel').hidden = !running;
    for (const input of form.querySelectorAll('input')) input.disabled = running;
    if (unconditional) $('distill-guidance').disabled = true;
  };

  const status = (text) => {
    $('distill-status').textContent = text;
  };

  const finish = () => {
    setRunning(false);
    $('distill-progress').hidden = true;
    run = null;
  };

  const onMessage = ({ data }) => {
    if (!run) return;
    if (data.type === 'step') {
      const { step, seconds } = data;
      state.seconds = seconds;
      if (step.stage === 'truth') {
        state.status = 'truth';
        state.truth = step;
        const bar = $('distill-progress');
        bar.hidden = false;
        bar.max = step.total;
        bar.value = step.done;
        status(`Ground truth (Dormand–Prince, tolerance 1e-5): ${step.done} of ${step.total} pairs · last batch ${step.nfe} evaluations · ${seconds.toFixed(1)} s`);
      } else if (step.stage === 'baselines') {
        state.status = 'training';
        state.baselines = step.baselines;
        state.init = step.init;
        state.curve = [{ iteration: 0, psnr: step.init.psnr }];
        const bar = $('distill-progress');
        bar.max = run.iterations;
        bar.value = 0;
        status(`Training from ${step.init.label} (${step.init.psnr.toFixed(2)} dB on the validation pairs)…`);
        drawCurve();
      } else {
        state.train.push({ iteration: step.iteration, psnr: step.trainPsnr });
        if (step.validationPsnr !== null) state.curve.push({ iteration: step.iteration, psnr: step.validationPsnr, seconds });
        $('distill-progress').value = step.iteration;
        status(`Iteration ${step.iteration} of ${run.iterations} · best validation PSNR ${step.bestPsnr.toFixed(2)} dB · ${seconds.toFixed(1)} s`);
        drawSoon();
      }
    } else if (data.type === 'done') {
      const solver = JSON.parse(data.solver);
      state.status = 'done';
      state.seconds = data.seconds;
      state.solverText = data.solver;
      const stem = run.model.name.replace(/^file:/, '').replace(/\.safetensors$/, '');
      const name = `${stem}-bns-${solver.nfe}-w${solver.guidance}.json`;
      const best = state.baselines[0];
      const measure = document.createElement('code');
      measure.textContent =
        `${data.truthCommand} --model MODEL.safetensors -o pairs.safetensors\n` +
        `bns solver measure --model MODEL.safetensors --pairs pairs.safetensors ${name}`;
      $('distill-result').replaceChildren(
        `Done in ${data.seconds.toFixed(1)} s: ${solver.metrics.validation_psnr.toFixed(2)} dB on the ${run.options.validation} validation pairs ` +
        `at NFE ${solver.nfe}` + (best ? `; the best classical solver (${best.label}) ${best.psnr.toFixed(2)} dB` : '') +
        `. It is in the solver menu as “yours”, for Generate and Compare. ` +
        'The file is an ordinary solver file bound to this model; to measure it on test pairs it never saw:',
        measure,
      );
      const link = $('distill-download');
      if (link.href) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(new Blob([data.solver], { type: 'application/json' }));
      link.download = name;
      link.hidden = false;
      status('');
      finish();
      addSolver(data.solver, name);
    } else if (data.type === 'cancelled') {
      state.status = 'cancelled';
      status('Cancelled; no solver was added.');
      finish();
    } else if (data.type === 'error') {
      state.status = 'failed';
      state.error = data.message;
      status(`Distillation failed: ${data.message}`);
      finish();
    }
  };

  /** Draws the curve at the next frame, once however many iterations arrive before it (they
   * come faster than frames: the main thread stays free). */
  let drawPending = false;
  function drawSoon() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      drawCurve();
    });
  }

  /** The validation PSNR per iteration (and the best so far, the solver kept), the classical
   * solvers as horizontal lines. */
  function drawCurve() {
    const canvas = $('distill-curve');
    canvas.hidden = false;
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || 560;
    const cssHeight = canvas.clientHeight || 240;
    canvas.width = Math.round(cssWidth * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, cssWidth, cssHeight);
    const lines = state.baselines.filter((b, i) => i === 0 || LINES.includes(b.label));
    const values = [...state.curve.map((p) => p.psnr), ...lines.map((b) => b.psnr)];
    let low = Math.floor(Math.min(...values) / 5) * 5;
    let high = Math.ceil((Math.max(...values) + 1) / 5) * 5;
    if (high - low < 10) high = low + 10;
    const left = 46;
    const right = cssWidth - 8;
    const top = 8;
    const bottom = cssHeight - 24;
    const iterations = run?.iterations ?? state.curve.at(-1)?.iteration ?? 1;
    const x = (i) => left + (right - left) * (i / Math.max(1, iterations));
    const y = (db) => bottom - (bottom - top) * ((db - low) / (high - low));
    const style = getComputedStyle(canvas);
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = style.color;
    g.strokeStyle = 'rgba(128,128,128,0.35)';
    g.lineWidth = 1;
    for (let db = low; db <= high; db += 5) {
      g.beginPath();
      g.moveTo(left, y(db));
      g.lineTo(right, y(db));
      g.stroke();
      g.fillText(db === high ? `${db} dB` : `${db}`, 2, y(db) + 4);
    }
    g.fillText(`iteration ${iterations}`, right - 70, cssHeight - 6);
    g.fillText('0', left, cssHeight - 6);
    g.setLineDash([5, 4]);
    lines.forEach((b, i) => {
      g.strokeStyle = i === 0 ? '#c77800' : '#888';
      g.beginPath();
      g.moveTo(left, y(b.psnr));
      g.lineTo(right, y(b.psnr));
      g.stroke();
      g.fillStyle = g.strokeStyle;
      g.fillText(`${b.label} ${b.psnr.toFixed(1)}`, left + 4, y(b.psnr) - 3);
    });
    g.setLineDash([]);
    g.strokeStyle = '#1a7f37';
    g.lineWidth = 2;
    g.beginPath();
    state.curve.forEach((p, i) => (i === 0 ? g.moveTo(x(p.iteration), y(p.psnr)) : g.lineTo(x(p.iteration), y(p.psnr))));
    g.stroke();
    // The best so far: the solver that is kept.
    let best = -Infinity;
    g.strokeStyle = '#0b3d1c';
    g.lineWidth = 1;
    g.beginPath();
    state.curve.forEach((p, i) => {
      best = Math.max(best, p.psnr);
      if (i === 0) g.moveTo(x(p.iteration), y(best));
      else g.lineTo(x(p.iteration), y(best));
    });
    g.stroke();
    const last = state.curve.at(-1);
    if (last) {
      g.fillStyle = '#0b3d1c';
      g.fillText(`BNS, best ${best.toFixed(1)}`, Math.min(x(last.iteration) + 4, right - 90), y(best) - 4);
    }
  }

  const numberOf = (id) => {
    const input = $(id);
    if (!input.checkValidity() || input.value === '') {
      const label = input.closest('label')?.firstChild?.textContent.trim() ?? id;
      throw new Error(`${label}: ${input.validationMessage || 'Not a number.'}`);
    }
    return Number(input.value);
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const model = current();
    try {
      if (!model) throw new Error('No model is loaded.');
      const options = {
        nfe: numberOf('distill-nfe'),
        guidance: numberOf('distill-guidance'),
        train: numberOf('distill-train'),
        validation: numberOf('distill-validation'),
        iterations: numberOf('distill-iterations'),
        validateEvery: 10,
      };
      reset();
      $('distill-result').textContent = '';
      $('distill-download').hidden = true;
      worker ??= new Worker(new URL('./lib/distill-worker.js', import.meta.url), { type: 'module' });
      worker.onmessage = onMessage;
      worker.onerror = (e) => onMessage({ data: { type: 'error', message: e.message ?? 'the worker failed to start' } });
      run = { model, options, iterations: options.iterations };
      state.status = 'truth';
      setRunning(true);
      status('Starting…');
      // A copy of the weights: the page keeps its own.
      worker.postMessage({ type: 'start', bytes: model.bytes.slice(), name: model.name, options });
    } catch (e) {
      state.status = 'failed';
      state.error = e.message;
      status(`Distillation not started: ${e.message}`);
    }
  });
  // The curve is drawn at the canvas's size on the screen.
  window.addEventListener('resize', () => {
    if (state.curve.length > 0) drawCurve();
  });
  $('distill-cancel').addEventListener('click', () => {
    if (run) worker.postMessage({ type: 'cancel' });
  });

  return {
    /** The model in view changed: fits the defaults to its kind and forgets the last curve. */
    modelChanged(model) {
      const points = model.spec.data_shape.slice(1).every((n) => n === 1);
      const d = DEFAULTS[points ? 'points' : 'images'];
      $('distill-train').value = String(d.train);
      $('distill-validation').value = String(d.validation);
      $('distill-iterations').value = String(d.iterations);
      unconditional = model.spec.num_classes === 0;
      $('distill-guidance').disabled = unconditional || run !== null;
      if (unconditional) $('distill-guidance').value = '0';
      $('distill-for').textContent = model.title ?? model.name;
      // The page's gradient runs through the network's vector–Jacobian product, written for the
      // MLP only: other networks are distilled by `bns distill` (the runtime says the same).
      const architecture = model.spec.architecture;
      const before = refusal;
      refusal = architecture === 'mlp' ? null
        : `This page distils solvers for MLP models only (the ${architecture} network has no ` +
          'vector–Jacobian product in the runtime): choose an MLP model above, or distil this ' +
          'one with the command-line tool, bns distill.';
      state.refusal = refusal;
      if (run === null) {
        $('distill-start').disabled = refusal !== null;
        if (refusal !== null) status(refusal);
        else if (before !== null) status('');
      }
    },
  };
}
