"""The demo's ``report.md``: the figures of ``report.json`` as tables a person reads in a minute."""

from __future__ import annotations


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def markdown(report: dict) -> str:
    """Render a demo report (the dict written as ``report.json``) as Markdown."""
    q = report["quality"]
    holes = report["hole_ratio"]
    job = report["job"]
    config = report["config"]
    lines = [
        "# Recast 4D demo report",
        "",
        f"Shot: {report['frames']} frames at {report['width']}x{report['height']}, re-filmed along "
        f"`{config['path_spec']}` with the `{config['engine']}` fill engine on `{job['device']}`.",
        "",
        "Scored against the ground truth (the original scene rendered through the target camera). "
        "*Seen* pixels are those the source video shows from the new viewpoint (after static "
        "accumulation); *filled* pixels are the holes the fill engine generated (the job's `masks`).",
        "",
        "| image | PSNR seen (dB) | PSNR filled (dB) | PSNR all (dB) | SSIM seen | SSIM filled | SSIM all |",
        "|---|---|---|---|---|---|---|",
    ]
    render = report["novel_view_render"]
    headline = ("novel view: native Gaussian splats, Cycles (Blender 5.3)" if render["kind"] == "native_splats"
                else "novel view: imported point cloud, Cycles (no Blender 5.3 here)")
    names = {
        "novel_view": headline,
        "fallback_points": "fallback (Blender 4.2-5.2, here 5.0.1): point cloud, Cycles",
        "fallback_sphere_splats": "fallback (Blender 4.2-5.2, here 5.0.1): sphere splats, Cycles",
        "backend_video": "backend's filled video (`<trajectory>/frames`)",
        "baseline_source_as_new_view": "baseline: source frame shown as the new view",
    }
    for key, label in names.items():
        s = q.get(key)
        if s is None:
            continue
        lines.append(f"| {label} | {_fmt(s['psnr_seen'])} | {_fmt(s['psnr_filled'])} | {_fmt(s['psnr_all'])} | "
                     f"{_fmt(s['ssim_seen'], 3)} | {_fmt(s['ssim_filled'], 3)} | {_fmt(s['ssim_all'], 3)} |")
    lines += [
        "",
        f"Filled pixels: {100 * q['novel_view']['filled_fraction']:.1f} % of all pixels over all frames.",
        f"Coverage of the novel view (pixels a point of the imported 4D result covers): "
        f"{100 * render['coverage']:.1f} % (seen {_pct(render['coverage_seen'])}, "
        f"filled {_pct(render['coverage_filled'])}); point radius x{render['point_radius_scale']:g}.",
        "",
        "## Holes",
        "",
        "| | fraction of target pixels with no source point |",
        "|---|---|",
        f"| before static accumulation | {100 * holes['before_static_accumulation']:.2f} % |",
        f"| after static accumulation | {100 * holes['after_static_accumulation']:.2f} % |",
        "",
        "## Timings",
        "",
        "Backend job stages (seconds, from the job's `report.json`):",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    stages = job.get("stages_s") or {}
    lines += [f"| {name} | {_fmt(seconds)} |" for name, seconds in stages.items()]
    lines += [f"| **job wall time** | {_fmt(job.get('wall_s'))} |", "", "Demo stages (seconds):", "",
              "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {_fmt(seconds)} |" for name, seconds in report["demo_stages_s"].items()]
    points = job.get("points") or {}
    if points:
        lines += ["", f"Points: {points.get('source')} lifted from the source, {points.get('generated')} "
                  f"generated in the holes, {points.get('fused')} in the fused 4D point cloud."]
    if job.get("gaussian_iterations") is not None:
        lines += ["", f"Gaussians: {job['gaussian_iterations']} fitting step(s) per frame "
                  "(0 = the fused points as Gaussians, unfitted)."]
    native = render.get("native")
    if native:
        lines += ["", f"Native splats: Blender {native['blender']}, {native['splats_first_frame']} splats in the "
                  f"first frame, Import Result {native['import_s']:.2f} s, render {native['render_s']:.1f} s "
                  f"({native['samples']} samples, denoiser {'on' if native['denoise'] else 'off'}, "
                  f"`{native['view_transform']}` view transform)."]
    lines += ["", f"Fallback point cloud rendered with the `{render['view_transform']}` view transform "
              "(the point colours are emitted unlit; see docs/demo.md).", ""]
    return "\n".join(lines)
