"""Rows -> response bodies, with the URLs clients follow."""
from __future__ import annotations

from ..schemas import AuditOut, CounterfactualOut, DatasetOut, JobOut, ModelOut, ScoreOut
from ..services.jobs import queue_position
from ..tables import Audit, AuditScore, Counterfactual, Dataset, Job, TrainedModel

V1 = "/v1"


def job_out(job: Job) -> JobOut:
    position = queue_position(job)
    return JobOut.model_validate(job).model_copy(update={"url": f"{V1}/jobs/{job.id}", "queue_position": position})


def dataset_out(row: Dataset) -> DatasetOut:
    return DatasetOut(id=row.id, name=row.name, file_format=row.file_format, image_size=row.image_size,
                      n_samples=row.n_samples, counts={"positive": row.n_positive, "negative": row.n_negative},
                      attributes=row.attributes, problems=row.problems, upload_bytes=row.upload_bytes,
                      created_at=row.created_at)


def model_out(row: TrainedModel) -> ModelOut:
    return ModelOut.model_validate(row)


def counterfactual_out(row: Counterfactual) -> CounterfactualOut:
    out = CounterfactualOut.model_validate(row)
    if row.result and row.result.get("pairs_png"):
        out = out.model_copy(update={"result": {**row.result,
                                                "pairs_png": f"{V1}/counterfactuals/{row.id}/pairs.png"}})
    return out


def image_url(dataset_id: int, index: int) -> str:
    return f"{V1}/datasets/{dataset_id}/samples/{index}/image"


def audit_out(row: Audit, with_report: bool = True) -> AuditOut:
    out = AuditOut.model_validate(row)
    if not with_report or row.report is None:
        return out.model_copy(update={"report": None})
    report = dict(row.report)
    report["figures"] = {name: f"{V1}/audits/{row.id}/figures/{file}"
                         for name, file in row.report.get("figures", {}).items()}
    report["under_represented_features"] = [
        {**f, "traversal_strip": f"{V1}/audits/{row.id}/figures/{f['traversal_strip']}"} if f.get("traversal_strip")
        else f for f in report.get("under_represented_features", [])]
    report["subgroups"] = [
        {**s, **({"grid": f"{V1}/audits/{row.id}/figures/{s['grid']}"} if s.get("grid") else {}),
         **({"generated_grid": f"{V1}/audits/{row.id}/subgroups/{s['id']}/generated.png"}
            if s.get("generated_grid") else {})}
        for s in report.get("subgroups", [])]
    report["anomalies"] = {**report["anomalies"], "top": [
        {**t, "image_url": image_url(row.dataset_id, t["index"])} for t in report["anomalies"]["top"]]}
    return out.model_copy(update={"report": report})


def score_out(row: AuditScore, dataset_id: int, review: str | None = None) -> ScoreOut:
    return ScoreOut(index=row.sample_index, label=row.label, log_density=row.log_density,
                    sampling_weight=row.sampling_weight, anomaly_score=row.anomaly_score,
                    is_anomaly=row.is_anomaly, reconstruction_error=row.reconstruction_error,
                    predicted_probability=row.predicted_probability, subgroup=row.subgroup,
                    under_representation=row.under_representation, attributes=row.attributes,
                    image_url=image_url(dataset_id, row.sample_index), review=review)
