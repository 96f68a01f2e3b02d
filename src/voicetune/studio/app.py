"""The studio's pages (Gradio): Data, Train, Checkpoints, Synthesize, System.

Each handler parses what the page holds, calls the library function the CLI calls, and shows the
result; state is read back from the workspace's files on every load, so a refresh, a second tab or
a restarted studio shows the same. Training runs as its own `voicetune train` process
(train/control.py); the page only starts, finds, stops and watches it.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr

from voicetune.config import format_size
from voicetune.errors import UsageError, VoicetuneError
from voicetune.studio import views
from voicetune.studio.workspace import Workspace, check_urls
from voicetune.synthesis.engine import MAX_SPEED, MIN_SPEED

CLIPS_PER_PAGE = 12
POLL_SECONDS = 2.0
# System fonts only: the default theme would fetch web fonts, and a studio may have no internet.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def guarded(handler):
    """A VoicetuneError (bad input, a path outside the workspace...) becomes the page's error box."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except VoicetuneError as err:
            raise gr.Error(str(err), duration=None) from None

    return wrapper


def build_app(ws: Workspace, max_upload_bytes: int, reachable_from_others: bool = False) -> gr.Blocks:
    """The whole studio over the workspace `ws`; `reachable_from_others` when it listens beyond
    loopback (the URL field then fetches public addresses only)."""
    with gr.Blocks(title="voicetune studio", analytics_enabled=False) as app:
        gr.Markdown(f"# voicetune studio\nworkspace: `{ws.root}`")
        with gr.Tabs():
            with gr.Tab("Data", id="data", elem_id="tab-data"):
                data = _data_page(ws, max_upload_bytes, reachable_from_others)
            with gr.Tab("Train", id="train", elem_id="tab-train") as train_tab:
                train = _train_page(ws)
            with gr.Tab("Checkpoints", id="checkpoints", elem_id="tab-checkpoints") as ckpt_tab:
                ckpt = _checkpoints_page(ws)
            with gr.Tab("Synthesize", id="synthesize", elem_id="tab-synthesize") as synth_tab:
                synth = _synthesize_page(ws)
            with gr.Tab("System", id="system", elem_id="tab-system") as system_tab:
                system = _system_page()
        app.load(data["load"], outputs=data["load_outputs"])
        app.load(train["load"], outputs=train["load_outputs"])
        train_tab.select(train["load"], outputs=train["load_outputs"])
        ckpt_tab.select(ckpt["load"], outputs=ckpt["load_outputs"])
        synth_tab.select(synth["load"], outputs=synth["load_outputs"])
        system_tab.select(system["load"], outputs=system["load_outputs"])
    return app


# ---- Data -----------------------------------------------------------------------------------


def _data_page(ws: Workspace, max_upload_bytes: int, reachable_from_others: bool) -> dict:
    from voicetune.data.edit import list_clips, remove_clip, restore_clip, set_transcript

    gr.Markdown(
        "Recordings in any format: upload them, name a folder inside the workspace, or paste URLs. "
        "**Prepare** cuts them into clips, transcribes them and checks the result."
    )
    with gr.Row():
        name = gr.Textbox("my_voice", label="dataset name", elem_id="data-name", scale=1)
        transcriber = gr.Dropdown(
            ["whisper", "pocketsphinx", "none"],
            value="whisper",
            label="transcriber",
            elem_id="data-transcriber",
            scale=1,
        )
        whisper_model = gr.Textbox(
            ws.whisper_model(),
            label="whisper model (name or folder; kept for this workspace)",
            elem_id="data-whisper",
            scale=2,
        )
        language = gr.Textbox("", label="language (empty: detect)", elem_id="data-language", scale=1)
        min_seconds = gr.Number(5.0, label="shortest clip (s)", elem_id="data-min", scale=1)
        max_seconds = gr.Number(15.0, label="longest clip (s)", elem_id="data-max", scale=1)
    with gr.Row():
        uploads = gr.File(
            file_count="multiple",
            label=f"upload recordings (up to {format_size(max_upload_bytes)} each)",
            elem_id="data-upload",
            scale=2,
        )
        with gr.Column(scale=2):
            folder = gr.Textbox(
                "", label="or a folder inside the workspace", placeholder="recordings/my_voice", elem_id="data-folder"
            )
            urls = gr.Textbox("", label="or URLs, one per line (downloaded with yt-dlp)", lines=2, elem_id="data-urls")
    prepare = gr.Button("Prepare", variant="primary", elem_id="data-prepare")
    message = gr.Markdown(elem_id="data-message")
    with gr.Row():
        report = gr.Markdown(elem_id="data-report")
        histogram = gr.Image(
            label="clip durations", type="filepath", interactive=False, elem_id="data-histogram", height=260
        )
    with gr.Row():
        sort = gr.Dropdown(list(views.CLIP_ORDERS), value="id", label="sort clips by", elem_id="data-sort", scale=1)
        page = gr.Number(1, label="page", precision=0, minimum=1, elem_id="data-page", scale=1)
    version = gr.State(0)  # bumped to redraw the clip table after a change

    def dataset_view(dataset_name: str):
        folder_path = ws.named("datasets", dataset_name)
        report_path = folder_path / "report.json"
        if not report_path.is_file():
            return "no dataset prepared under this name yet", None
        summary = _report_markdown(json.loads(report_path.read_text(encoding="utf-8")))
        picture = folder_path / "durations.png"
        return summary, str(picture) if picture.is_file() else None

    def run_prepare(
        dataset_name,
        files,
        folder_text,
        url_text,
        transcriber_name,
        model_name,
        lang,
        shortest,
        longest,
        version_now,
        progress=gr.Progress(),
    ):
        try:
            return prepared(
                dataset_name,
                files,
                folder_text,
                url_text,
                transcriber_name,
                model_name,
                lang,
                shortest,
                longest,
                version_now,
                progress,
            )
        except VoicetuneError as err:
            # Said in the message alone: the uploads, the report and the histogram keep what they show.
            return f"**Not prepared:** {err}", gr.update(), gr.update(), gr.update(), version_now

    def prepared(
        dataset_name,
        files,
        folder_text,
        url_text,
        transcriber_name,
        model_name,
        lang,
        shortest,
        longest,
        version_now,
        progress,
    ):
        from voicetune.data.fetch import fetch_audio
        from voicetune.data.prepare import PrepareOptions, prepare_dataset

        out = ws.named("datasets", dataset_name)
        folder_path = ws.folder_inside(folder_text, "folder") if folder_text.strip() else None
        lines = check_urls([u.strip() for u in (url_text or "").splitlines() if u.strip()], reachable_from_others)
        model_name = ws.remember_whisper_model(model_name)
        inputs = [ws.take_upload(Path(f), dataset_name, max_upload_bytes) for f in files or []]
        if folder_path is not None:
            inputs.append(folder_path)
        if lines:
            progress(0, desc="downloading")
            fetched = fetch_audio(lines, ws.named("recordings", dataset_name) / "fetched")
            if not fetched.ok:
                failed = [f"{item.url}: {item.error}" for item in fetched.items if item.status == "failed"]
                raise VoicetuneError("some URLs could not be downloaded: " + "; ".join(failed[:3]))
            inputs.append(ws.named("recordings", dataset_name) / "fetched")
        if not inputs:
            raise VoicetuneError(
                "nothing to prepare: upload recordings, name a folder inside the workspace, or paste URLs"
            )
        options = PrepareOptions(
            min_seconds=float(shortest),
            max_seconds=float(longest),
            transcriber=transcriber_name,
            whisper_model=model_name,
            language=lang.strip() or None,
        )
        result = prepare_dataset(
            inputs,
            out,
            options,
            show_progress=False,
            on_progress=lambda fraction, status: progress(fraction, desc=f"prepare: {status}"),
        )
        summary, picture = dataset_view(dataset_name)
        done = f"prepared {result.clips} clips into `{out.relative_to(ws.root)}` in {result.elapsed_seconds:.0f} s"
        return done, summary, picture, None, version_now + 1

    prepare.click(
        run_prepare,
        inputs=[name, uploads, folder, urls, transcriber, whisper_model, language, min_seconds, max_seconds, version],
        outputs=[message, report, histogram, uploads, version],
    )

    # A new name shows that dataset's report (or says there is none), never the previous one's.
    # A name being typed may not be valid yet: the report says why, without an error box per key.
    def named_view(dataset_name: str):
        try:
            return dataset_view(dataset_name)
        except VoicetuneError as err:
            return str(err), None

    name.change(named_view, inputs=[name], outputs=[report, histogram], show_progress="hidden")
    for event in (whisper_model.blur, whisper_model.submit):
        event(
            guarded(ws.remember_whisper_model), inputs=[whisper_model], outputs=[whisper_model], show_progress="hidden"
        )

    @gr.render(inputs=[name, sort, page, version])
    def clip_table(dataset_name, order, page_number, _version):
        try:
            dataset = ws.named("datasets", dataset_name)
            clips = list_clips(dataset) if (dataset / ".voicetune").is_dir() else []
        except VoicetuneError as err:
            gr.Markdown(str(err))
            return
        if not clips:
            gr.Markdown("no clips yet")
            return
        shown = views.clip_page(clips, order, page_number, CLIPS_PER_PAGE)
        gr.Markdown(
            f"**{sum(not c.removed for c in clips)} clips** ({sum(c.removed for c in clips)} removed) — "
            f"page {shown.number} of {shown.pages}. Edit a transcript and press Enter or **Save**: "
            "metadata.csv and the split files are rewritten and the dataset is checked again. A removed clip "
            'stays in its place, marked removed, until you sort by "removed last".'
        )
        for clip in shown.clips:
            with gr.Row(equal_height=True, elem_classes=["clip-row"]):
                gr.Audio(
                    str(clip.wav),
                    show_label=False,
                    interactive=False,
                    elem_id=f"clip-audio-{clip.clip_id}",
                    scale=3,
                    min_width=240,
                    buttons=["download"],
                )
                with gr.Column(scale=6):
                    flags = (" · flags: " + ", ".join(clip.flags)) if clip.flags else ""
                    gr.Markdown(
                        f"`{clip.clip_id}` {clip.duration:.1f} s{flags}{' · **removed**' if clip.removed else ''}"
                    )
                    text = gr.Textbox(
                        clip.text, show_label=False, interactive=not clip.removed, elem_id=f"clip-text-{clip.clip_id}"
                    )
                with gr.Column(scale=1, min_width=110):
                    if not clip.removed:
                        save = gr.Button("Save", size="sm", elem_id=f"clip-save-{clip.clip_id}")
                        remove = gr.Button("Remove", size="sm", variant="stop", elem_id=f"clip-remove-{clip.clip_id}")
                        save_text = guarded(
                            lambda new_text, v, cid=clip.clip_id: _saved(
                                dataset, set_transcript(dataset, cid, new_text), f"saved {cid}", v, False
                            )
                        )
                        save.click(save_text, inputs=[text, version], outputs=[message, report, histogram, version])
                        text.submit(save_text, inputs=[text, version], outputs=[message, report, histogram, version])
                        remove.click(
                            guarded(
                                lambda v, how, cid=clip.clip_id: _saved(
                                    dataset,
                                    remove_clip(dataset, cid),
                                    f"removed {cid} (now on page "
                                    f"{views.page_of(list_clips(dataset), how, cid, CLIPS_PER_PAGE)}, marked removed: "
                                    "Restore puts it back)",
                                    v,
                                    True,
                                )
                            ),
                            inputs=[version, sort],
                            outputs=[message, report, histogram, version],
                        )
                    else:
                        restore = gr.Button("Restore", size="sm", elem_id=f"clip-restore-{clip.clip_id}")
                        restore.click(
                            guarded(
                                lambda v, cid=clip.clip_id: _saved(
                                    dataset, restore_clip(dataset, cid), f"restored {cid}", v, True
                                )
                            ),
                            inputs=[version],
                            outputs=[message, report, histogram, version],
                        )

    def load():
        names = ws.names("datasets")
        current = names[0] if names else "my_voice"
        summary, picture = dataset_view(current)
        return current, summary, picture, ws.whisper_model()

    return {"load": load, "load_outputs": [name, report, histogram, whisper_model]}


def _saved(dataset: Path, report: dict, what: str, version: int, redraw: bool):
    check = report["check"]
    verdict = "dataset check: ok" if check["ok"] else f"dataset check: {check['errors']} errors"
    picture = dataset / "durations.png"
    return (
        f"{what}; {verdict}, {check['warnings']} warnings",
        _report_markdown(report),
        str(picture) if picture.is_file() else None,
        version + 1 if redraw else version,
    )


def _report_markdown(report: dict) -> str:
    totals = report["totals"]
    lines = [
        f"### {totals['clips']} clips, {totals['seconds_kept'] / 60:.1f} min kept",
        f"train {totals['train_clips']} / validation {totals['val_clips']} · from {totals['sources']} files "
        f"({totals['sources_rejected']} rejected)",
    ]
    if report.get("rejections_by_reason"):
        lines.append(
            "**left out:** "
            + ", ".join(
                f"{reason} ×{v['count']} ({v['seconds']:.0f} s)" for reason, v in report["rejections_by_reason"].items()
            )
        )
    if report.get("mixed_languages"):
        mixed = report["mixed_languages"]
        lines.append(
            "**warning, several languages:** "
            + ", ".join(f"{code} ×{n}" for code, n in mixed["languages"].items())
            + f". {mixed['fix'][0].upper()}{mixed['fix'][1:]}."
        )
    if report.get("speaker"):
        voice = report["speaker"]
        kept = "the voice that speaks most" if voice["voice"] == "auto" else f"the voice of {Path(voice['voice']).name}"
        sample = voice.get("sample")
        purity = voice.get("estimated_purity")
        lines.append(
            f"**voice kept:** {kept}"
            + (f" (hear it in {Path(sample[0]).name} at {sample[1]:.1f}-{sample[2]:.1f} s)" if sample else "")
            + (f"; estimated purity {purity:.1%}" if purity is not None else "")
            + f"; left out {voice['left_out']} stretches of other voices ({voice['seconds_left_out']:.0f} s: "
            + ", ".join(f"{r} {sec:.0f} s" for r, sec in voice.get("seconds_left_out_by_reason", {}).items())
            + ")"
            + "".join(
                f"\n- {Path(r['path']).name} {r['start']:.1f}-{r['end']:.1f} s: {r['reason']}, similarity {r['similarity']:.2f}"
                for r in voice["most_like_the_voice_kept"][:5]
            )
        )
        if voice.get("borderline"):
            lines.append(
                "**borderline decisions** (listen, then overrule with the clip's Remove/Restore button or the command):"
                + "".join(
                    f"\n- {d['decision']} {Path(d['path']).name} {d['start']:.1f}-{d['end']:.1f} s"
                    f"{' (clip ' + d['clip'] + ')' if d.get('clip') else ''}, p_target {d['p_target']:.2f}: `{d['overrule']}`"
                    for d in voice["borderline"]
                )
            )
    if report.get("flags"):
        lines.append("**flags:** " + ", ".join(f"{flag} ×{n}" for flag, n in report["flags"].items()))
    check = report["check"]
    lines.append(
        f"**dataset check:** {'ok' if check['ok'] else 'errors'} — {check['errors']} errors, "
        f"{check['warnings']} warnings" + ("".join(f"\n- {i['message']}" for i in check.get("issues", [])[:5]))
    )
    return "\n\n".join(lines)


# ---- Train ----------------------------------------------------------------------------------


def _train_page(ws: Workspace) -> dict:
    from voicetune.models.registry import DEFAULT_MODEL, model_names
    from voicetune.train import control
    from voicetune.train.auto_settings import auto_settings, detect_machine, projected_disk_bytes, size_estimate
    from voicetune.train.plots import write_loss_plot

    gr.Markdown(
        "Training runs as its own `voicetune train` process: closing this page never stops it, and "
        "reopening the page finds it again. **Stop** asks it to write a checkpoint and exit; **Resume** "
        "continues exactly where it stopped."
    )
    with gr.Row():
        dataset = gr.Dropdown([], label="dataset", elem_id="train-data", scale=2)
        run_name = gr.Textbox("run1", label="run name", elem_id="train-run", scale=2)
        model = gr.Dropdown(model_names(), value=DEFAULT_MODEL, label="model", elem_id="train-model", scale=1)
        pretrained = gr.Textbox(
            "",
            label="pretrained weights (path in the workspace or hf://REPO/FILE; empty: the model's)",
            elem_id="train-pretrained",
            scale=3,
        )
    with gr.Row():
        lora_rank = gr.Number(0, label="LoRA rank (0: full fine-tune)", precision=0, minimum=0, elem_id="train-lora")
        max_updates = gr.Number(1000, label="updates", precision=0, minimum=1, elem_id="train-updates")
        batch_size = gr.Number(8, label="batch size (clips)", precision=0, minimum=1, elem_id="train-batch")
        batch_frames = gr.Number(0, label="batch frames (0: by clips)", precision=0, minimum=0, elem_id="train-frames")
        save_every = gr.Number(200, label="milestone every", precision=0, minimum=1, elem_id="train-save-every")
        last_every = gr.Number(50, label="rolling checkpoint every", precision=0, minimum=1, elem_id="train-last-every")
        keep_last = gr.Number(3, label="milestones kept", precision=0, minimum=1, elem_id="train-keep-last")
        disk_budget = gr.Textbox("", label="disk budget (e.g. 20G)", elem_id="train-budget")
    whisper_model = gr.Textbox(
        ws.whisper_model(),
        label="whisper model for the milestones' WER (name or folder; the same as on the Data page)",
        elem_id="train-whisper",
    )
    with gr.Row():
        auto = gr.Button("Auto settings", elem_id="train-auto")
        start = gr.Button("Start", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume = gr.Button("Resume", elem_id="train-resume")
    plan = gr.Markdown(elem_id="train-plan")
    status = gr.Markdown(elem_id="train-status")
    with gr.Row():
        with gr.Column(scale=3):
            # the picture has its own title: the label's badge would cover its top-left corner,
            # where the top y tick label is
            plot = gr.Image(label="loss", show_label=False, type="filepath", interactive=False, elem_id="train-plot")
        with gr.Column(scale=2):
            sample = gr.Dropdown([], label="milestone samples", elem_id="train-sample")
            sample_audio = gr.Audio(
                label="sample", interactive=False, type="filepath", elem_id="train-sample-audio", buttons=["download"]
            )
    # The page's whole width: four panels of scores need it to be read.
    scores = gr.Image(
        label="evaluation scores (RUN/eval.png)",
        type="filepath",
        interactive=False,
        elem_id="train-scores",
        visible=False,
    )
    log = gr.Textbox(
        label="training output", lines=8, max_lines=8, interactive=False, elem_id="train-log", autoscroll=True
    )
    timer = gr.Timer(POLL_SECONDS)

    form = [
        dataset,
        model,
        pretrained,
        lora_rank,
        max_updates,
        batch_size,
        batch_frames,
        save_every,
        last_every,
        keep_last,
        disk_budget,
        whisper_model,
    ]

    def flags_of(
        data_name, model_name, pretrained_text, rank, updates, batch, frames, save, last, keep, budget, whisper
    ) -> dict:
        if not data_name:
            raise VoicetuneError("choose a dataset (prepare one on the Data page first)")
        pretrained_value = pretrained_text.strip() or None
        if pretrained_value and not pretrained_value.startswith("hf://"):
            pretrained_value = str(ws.inside(pretrained_value, "pretrained weights"))
        return {
            "data": str(ws.named("datasets", data_name)),
            "model": model_name,
            "pretrained": pretrained_value,
            "lora_rank": int(rank) or None,
            "max_updates": int(updates),
            "batch_size": None if int(frames or 0) else int(batch),
            "batch_frames": int(frames or 0) or None,
            "save_every": int(save),
            "last_every": int(last),
            "keep_last": int(keep),
            "disk_budget": budget.strip() or None,
            "whisper_model": ws.remember_whisper_model(whisper),
        }

    def plan_text(model_name, rank, updates, save, last, keep) -> str:
        if None in (updates, save, last, keep) or min(updates, save, last, keep) < 1:
            return ""  # a field being typed: say nothing until it holds a number
        try:
            size_estimate(model_name)
        except UsageError:
            return ""  # a model without an estimate: the run prints its own at start
        peak = projected_disk_bytes(
            model_name, int(rank or 0) or None, int(updates), int(save), int(last), int(keep), None, "full"
        )
        return f"projected disk use of the checkpoints: **~{format_size(peak)}** (estimate; the run prints its own at start)"

    @guarded
    def fill_auto(model_name, updates, rank, keep):
        machine = detect_machine()
        settings = auto_settings(model_name, int(updates), machine)
        frames = settings.get("batch_frames", 0)
        batch = settings.get("batch_size", 8)
        text = (
            f"auto settings for {machine.describe()}: "
            + ", ".join(f"{k} {v}" for k, v in settings.items())
            + "\n\n"
            + plan_text(model_name, rank, updates, settings["save_every"], settings["last_every"], keep)
        )
        return batch, frames, settings["save_every"], settings["last_every"], text

    auto.click(
        fill_auto,
        inputs=[model, max_updates, lora_rank, keep_last],
        outputs=[batch_size, batch_frames, save_every, last_every, plan],
    )
    # On a person's edits only (`input`, not `change`): the values auto fills in must not replace
    # the auto settings' explanation it wrote (which ends with the same projection).
    for field in (model, lora_rank, max_updates, save_every, last_every, keep_last):
        field.input(
            plan_text, inputs=[model, lora_rank, max_updates, save_every, last_every, keep_last], outputs=[plan]
        )

    def launch(resuming: bool, name: str, *values):
        pid = control.start_training(ws.named("runs", name), flags_of(*values), resume=resuming)
        return f"started `voicetune train` (pid {pid}) for run {name}"

    start.click(guarded(lambda name, *v: launch(False, name, *v)), inputs=[run_name, *form], outputs=[status])
    resume.click(guarded(lambda name, *v: launch(True, name, *v)), inputs=[run_name, *form], outputs=[status])
    for event in (whisper_model.blur, whisper_model.submit):
        event(
            guarded(ws.remember_whisper_model), inputs=[whisper_model], outputs=[whisper_model], show_progress="hidden"
        )
    stop.click(
        guarded(
            lambda name: (
                f"sent SIGTERM to pid {control.stop_training(ws.named('runs', name))}: it writes a checkpoint and stops"
            )
        ),
        inputs=[run_name],
        outputs=[status],
    )

    seen = gr.State({})  # what this tab shows already: a poll that finds nothing new changes nothing

    def watch(name: str, chosen_sample: str | None, shown: dict):
        try:
            run = ws.named("runs", name)
        except VoicetuneError as err:
            return str(err), gr.update(), gr.update(), gr.update(), gr.update(), "", shown
        holder = control.running_trainer(run)
        progress = control.training_progress(run)
        state = f"**running** (pid {holder.get('pid')} on {holder.get('host')})" if holder else "**not running**"
        line = f"{state} · step {progress.step}" + (f" / {progress.max_updates}" if progress.max_updates else "")
        if progress.loss is not None:
            line += f" · loss {progress.loss:.4f}"
        if progress.val_loss is not None:
            line += f" · validation loss {progress.val_loss:.4f}"
        if holder and progress.eta_seconds is not None:
            line += f" · {progress.updates_per_s:.2f} updates/s · ETA {time.strftime('%H:%M:%S', time.gmtime(progress.eta_seconds))}"
        work = progress.milestone_work if holder else None
        if work:  # updates stand still during a milestone: say what it does (the console's line), and for how long
            line += (
                f" · milestone work for {max(0, time.time() - work.get('since', time.time())):.0f} s: "
                f"{work.get('line') or work['work']}"
            )
        log_path = control.output_log(run)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:]) if log_path else ""
        samples = [(f"step {step}: {wav.stem[:-4]}", str(wav)) for step, wav in control.milestone_samples(run)]
        evaluated = run / "eval.png"  # written by `voicetune eval` / the milestone scorer, when present
        now: dict[str, Any] = {
            "run": name,
            "step": progress.step,
            "samples": [v for _, v in samples],
            "eval": evaluated.stat().st_mtime if evaluated.is_file() else None,
        }
        if now == {k: shown.get(k) for k in now}:
            # Re-sending the picture or the player would redraw them (and stop a sample being played).
            return line, gr.update(), gr.update(), gr.update(), gr.update(), tail, shown
        picture = run / ".studio" / "loss.png"
        drawn = write_loss_plot(run, picture) if (run / "metrics.jsonl").is_file() else False
        values = now["samples"]
        selected = chosen_sample if chosen_sample in values else (values[0] if values else None)
        player = gr.update() if selected == chosen_sample and shown.get("run") == name else selected
        score_view = gr.update(value=str(evaluated), visible=True) if now["eval"] else gr.update(visible=False)
        return (
            line,
            str(picture) if drawn else None,
            score_view,
            gr.update(choices=samples, value=selected),
            player,
            tail,
            now,
        )

    watch_outputs = [status, plot, scores, sample, sample_audio, log, seen]
    timer.tick(watch, inputs=[run_name, sample, seen], outputs=watch_outputs, show_progress="hidden")
    run_name.submit(watch, inputs=[run_name, sample, gr.State({})], outputs=watch_outputs)
    sample.input(lambda path: path, inputs=[sample], outputs=[sample_audio])

    def load():
        datasets = ws.names("datasets")
        runs = ws.names("runs")
        # Attach: a run whose trainer is alive comes first, then the most recently changed one.
        live = [r for r in runs if control.running_trainer(ws.root / "runs" / r)]
        current = (live or runs or ["run1"])[0]
        fields = _saved_form(ws.root / "runs" / current)
        return (
            gr.update(choices=datasets, value=fields.pop("data", None) or (datasets[0] if datasets else None)),
            current,
            *[
                gr.update(value=fields[k]) if k in fields else gr.update()
                for k in ("model", "max_updates", "save_every", "last_every", "keep_last")
            ],
            fields.get("whisper_model") or ws.whisper_model(),  # the one the run scores with
        )

    return {
        "load": load,
        "load_outputs": [dataset, run_name, model, max_updates, save_every, last_every, keep_last, whisper_model],
    }


def _saved_form(run: Path) -> dict:
    """The settings a run was started with (run.json), to show them again after a reload."""
    try:
        config = json.loads((run / "run.json").read_text(encoding="utf-8")).get("config", {})
    except (OSError, ValueError):
        return {}
    fields = {
        k: config[k]
        for k in ("model", "max_updates", "save_every", "last_every", "keep_last", "whisper_model")
        if config.get(k)
    }
    if config.get("data"):
        fields["data"] = Path(config["data"]).name
    return fields


# ---- Checkpoints ----------------------------------------------------------------------------


def _checkpoints_page(ws: Workspace) -> dict:
    from voicetune.checkpoints.maintenance import comparison_lines, list_checkpoints, prune_run, verify_target
    from voicetune.models.registry import export_formats
    from voicetune.synthesis.inference import export_trained

    with gr.Row():
        run_name = gr.Dropdown([], label="run", elem_id="ckpt-run", scale=3)
        refresh = gr.Button("Refresh", elem_id="ckpt-refresh", scale=1)
        verify = gr.Button("Verify (hash every file)", elem_id="ckpt-verify", scale=1)
    gr.Markdown(
        "**score**: 1.0 = as good as the real voice on intelligibility (WER), speaker similarity and quality "
        "(DNSMOS); **weights**: which weights were scored (and are used by export and synthesis); "
        "**spread**: how much the score moves between seeds; ★ the best."
    )
    table = gr.Dataframe(
        headers=views.CKPT_COLUMNS,
        interactive=False,
        elem_id="ckpt-table",
        wrap=True,
        max_height=2000,
        column_widths=views.CKPT_COLUMN_WIDTHS,
    )
    message = gr.Markdown(elem_id="ckpt-message")
    with gr.Row():
        keep = gr.Number(2, label="keep newest milestones", precision=0, minimum=1, elem_id="ckpt-keep")
        preview = gr.Button("Preview prune", elem_id="ckpt-preview")
        prune = gr.Button("Prune", variant="stop", elem_id="ckpt-prune")
    with gr.Row():
        target = gr.Dropdown([], label="checkpoint to export", elem_id="ckpt-target", scale=2)
        fmt = gr.Dropdown(export_formats(), value="safetensors", label="format", elem_id="ckpt-format", scale=1)
        export = gr.Button("Export", variant="primary", elem_id="ckpt-export", scale=1)
    # shown once an export made something to download: empty, it only took room
    download = gr.File(label="download", interactive=False, elem_id="ckpt-download", visible=False)
    eval_plot = gr.Image(
        label="scores at milestones (RUN/eval.png)",
        type="filepath",
        interactive=False,
        elem_id="ckpt-eval-plot",
        visible=False,
    )
    gr.Markdown(
        "### Listen: two milestones, sentence by sentence\nThe evaluation sentences as two milestones said "
        "them, one under the other, beside the speaker's own recording, with each sentence's scores."
    )
    with gr.Row():
        ab_a = gr.Dropdown([], label="A", elem_id="ckpt-ab-a", scale=2)
        ab_b = gr.Dropdown([], label="B", elem_id="ckpt-ab-b", scale=2)
        compare = gr.Button("Compare", elem_id="ckpt-ab-go", scale=1)
    shown_ab = gr.State(None)  # (run, step A, step B) drawn below

    def show(name):
        if not name:
            return [], gr.update(choices=[], value=None), "no run yet", gr.update(visible=False), *_ab_choices([])
        run = ws.named("runs", name)
        choices = views.ab_choices(ws, name)
        if not (run / "checkpoints").is_dir():
            return (
                [],
                gr.update(choices=[], value=None),
                "this run has no checkpoint yet",
                gr.update(visible=False),
                *_ab_choices(choices),
            )
        rows, quarantined = list_checkpoints(run)
        note = f"{len(rows)} checkpoints" + (f"; quarantined: {', '.join(quarantined)}" if quarantined else "")
        compared = comparison_lines(rows)  # what `ckpt list` says below its table
        if compared:
            note += "\n\ncompared with the best:\n\n" + "\n".join(f"- {line}" for line in compared)
        picture = run / "eval.png"
        plot_update = gr.update(value=str(picture), visible=True) if picture.is_file() else gr.update(visible=False)
        return (
            views.checkpoint_table(rows),
            gr.update(choices=views.export_choices(rows), value=""),
            note,
            plot_update,
            *_ab_choices(choices),
        )

    def run_verify(name):
        rows = verify_target(ws.named("runs", name))
        bad = [r for r in rows if r.problem]
        return views.checkpoint_table(rows), (
            "all valid" if not bad else "INVALID: " + "; ".join(f"{r.name}: {r.problem}" for r in bad)
        )

    def run_prune(name, keep_last, dry_run):
        removed = prune_run(ws.named("runs", name), int(keep_last), dry_run)
        verb = "would remove" if dry_run else "removed"
        rows, _ = list_checkpoints(ws.named("runs", name))
        return views.checkpoint_table(rows), (f"{verb}: {', '.join(removed)}" if removed else "nothing to remove")

    def run_export(name, checkpoint, fmt_name):
        run = ws.named("runs", name)
        source = ws.inside(f"runs/{name}/checkpoints/{checkpoint}", "checkpoint") if checkpoint else run
        label = f"{name}_{checkpoint or 'best'}_{fmt_name}"
        out = ws.root / "exports" / label
        files = export_trained(source, fmt_name, out)
        archive = shutil.make_archive(str(out), "zip", root_dir=out)
        said = f"exported {', '.join(p.name for p in files)} to `exports/{label}` (and `exports/{label}.zip`)"
        return gr.update(value=archive, visible=True), said

    shown_outputs = [table, target, message, eval_plot, ab_a, ab_b]
    refresh.click(guarded(show), inputs=[run_name], outputs=shown_outputs)
    run_name.change(guarded(show), inputs=[run_name], outputs=shown_outputs)
    verify.click(guarded(run_verify), inputs=[run_name], outputs=[table, message])
    preview.click(guarded(lambda n, k: run_prune(n, k, True)), inputs=[run_name, keep], outputs=[table, message])
    prune.click(guarded(lambda n, k: run_prune(n, k, False)), inputs=[run_name, keep], outputs=[table, message])
    export.click(guarded(run_export), inputs=[run_name, target, fmt], outputs=[download, message])

    def choose_ab(name, a, b):
        views.ab_view(ws, name, a, b)  # a milestone without kept sentences is said here, in the error box
        return name, a, b

    compare.click(guarded(choose_ab), inputs=[run_name, ab_a, ab_b], outputs=[shown_ab])

    @gr.render(inputs=[shown_ab])
    def ab_table(chosen):
        if not chosen:
            return
        view = views.ab_view(ws, *chosen)
        for label, kept in (("A", view.a), ("B", view.b)):
            gr.Markdown(
                f"**{label}: step {kept.step}** — {views.Scores.of({**kept.measures, 'weights': kept.weights}).short()}"
            )
        for index, sentence in enumerate(view.sentences):
            gr.Markdown(f"**{index + 1}.** {sentence.text}", elem_classes=["ab-text"])
            with gr.Row(equal_height=False, elem_classes=["ab-row"]):
                with gr.Column(scale=1, min_width=240):
                    if sentence.real_clip is not None:
                        gr.Audio(
                            str(sentence.real_clip),
                            label="the real voice",
                            interactive=False,
                            elem_id=f"ab-real-{index}",
                            buttons=["download"],
                        )
                    else:
                        gr.Markdown(f"({sentence.no_clip})", elem_id=f"ab-no-real-{index}")
                with gr.Column(scale=2, min_width=320):
                    for label, kept in (("a", sentence.a), ("b", sentence.b)):
                        if kept is None:
                            gr.Markdown(f"{label.upper()}: (not said)")
                            continue
                        step = view.a.step if label == "a" else view.b.step
                        gr.Audio(
                            str(kept.audio),
                            label=f"{label.upper()}: step {step}",
                            interactive=False,
                            elem_id=f"ab-{label}-{index}",
                            buttons=["download"],
                        )
                        gr.Markdown(views.sentence_scores(kept), elem_id=f"ab-{label}-scores-{index}")

    def load():
        runs = ws.names("runs")
        return gr.update(choices=runs, value=runs[0] if runs else None)

    return {"load": load, "load_outputs": [run_name]}


def _ab_choices(choices: list[tuple[str, int]]):
    """The A and B pickers: A the newest kept milestone, B the one before it."""
    return (
        gr.update(choices=choices, value=choices[0][1] if choices else None),
        gr.update(choices=choices, value=choices[1][1] if len(choices) > 1 else None),
    )


# ---- Synthesize -----------------------------------------------------------------------------


def _synthesize_page(ws: Workspace) -> dict:
    from voicetune.data.edit import list_clips
    from voicetune.synthesis.engine import synthesize_to_file

    with gr.Row():
        first = gr.Dropdown([], label="checkpoint", elem_id="synth-ckpt-a")
        second = gr.Dropdown([], label="compare with (optional)", elem_id="synth-ckpt-b")
    with gr.Row():
        reference = gr.Dropdown([], label="reference clip from a dataset", elem_id="synth-ref", scale=2)
        upload = gr.Audio(
            sources=["upload"], type="filepath", label="or upload a reference", elem_id="synth-upload", scale=2
        )
        ref_text = gr.Textbox(
            "", label="what the reference says (for models that read it)", elem_id="synth-ref-text", scale=2
        )
    text = gr.Textbox("", label="text to speak", lines=2, elem_id="synth-text")
    with gr.Row():
        seed = gr.Number(0, label="seed", precision=0, elem_id="synth-seed")
        # the range the engine (and the speech API) takes
        speed = gr.Slider(MIN_SPEED, MAX_SPEED, value=1.0, step=0.05, label="speed", elem_id="synth-speed")
        go = gr.Button("Synthesize", variant="primary", elem_id="synth-go")
    with gr.Row():
        out_a = gr.Audio(
            label="checkpoint", type="filepath", interactive=False, elem_id="synth-out-a", buttons=["download"]
        )
        out_b = gr.Audio(
            label="compared with", type="filepath", interactive=False, elem_id="synth-out-b", buttons=["download"]
        )
    message = gr.Markdown(elem_id="synth-message")
    texts: dict[str, str] = {}

    def load():
        choices = views.checkpoint_choices(ws)
        refs = []
        for name in ws.names("datasets"):
            try:
                clips = [c for c in list_clips(ws.root / "datasets" / name) if not c.removed]
            except VoicetuneError:
                continue
            for clip in clips:
                value = str(clip.wav.relative_to(ws.root))
                texts[value] = clip.text
                refs.append((f"{name} / {clip.clip_id}: {clip.text[:40]}", value))
        return (
            gr.update(choices=choices, value=choices[0][1] if choices else None),
            gr.update(choices=[("(none)", ""), *choices], value=""),
            gr.update(choices=refs, value=refs[0][1] if refs else None),
            texts.get(refs[0][1], "") if refs else "",
        )

    def run_synthesis(a, b, ref_choice, ref_upload, transcript, sentence, seed_value, speed_value):
        if not a:
            raise VoicetuneError("choose a checkpoint (train a run first)")
        if ref_upload:
            ref = Path(ref_upload)
        elif ref_choice:
            ref = ws.inside(ref_choice, "reference clip")
        else:
            raise VoicetuneError("choose a reference clip or upload one")
        outputs = []
        for choice in (a, b):
            if not choice:
                outputs.append(None)
                continue
            target = ws.inside(choice, "checkpoint")
            out = ws.root / "synth" / f"{time.strftime('%Y%m%d-%H%M%S')}_{target.name}.wav"
            outputs.append(
                str(
                    synthesize_to_file(
                        target, sentence, ref, out, transcript.strip() or None, int(seed_value), float(speed_value)
                    )
                )
            )
        return outputs[0], outputs[1], "wrote " + ", ".join(f"`{Path(p).relative_to(ws.root)}`" for p in outputs if p)

    reference.input(lambda value: texts.get(value, ""), inputs=[reference], outputs=[ref_text])
    go.click(
        guarded(run_synthesis),
        inputs=[first, second, reference, upload, ref_text, text, seed, speed],
        outputs=[out_a, out_b, message],
    )
    return {"load": load, "load_outputs": [first, second, reference, ref_text]}


# ---- System ---------------------------------------------------------------------------------


def _system_page() -> dict:
    from voicetune.doctor import run_checks

    gr.Markdown("What `voicetune doctor` reports about this machine.")
    # Tall enough for every check: an inner scroll would hide rows below the fold.
    table = gr.Dataframe(
        headers=["check", "status", "detail"], interactive=False, elem_id="system-table", wrap=True, max_height=4000
    )
    refresh = gr.Button("Check again", elem_id="system-refresh")

    def load():
        return [[c.name, "ok" if c.ok else "problem", c.detail] for c in run_checks()]

    refresh.click(load, outputs=[table])
    return {"load": load, "load_outputs": [table]}
