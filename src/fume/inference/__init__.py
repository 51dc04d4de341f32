"""Inference and deployment: predict on frame pairs, folders, CSVs and videos; ONNX export with a
parity check and int8 quantization; CPU/GPU benchmarks.

    from fume.inference import Predictor
    predictor = Predictor.from_checkpoint("best.ckpt", backend="onnxruntime")
    result = predictor.predict(co2="co2.png", ch4="ch4.png")
    print(result.class_name, result.to_dict()["gases"]["co2"]["plume_area_percent"])
"""

from fume.inference.predictor import GasResult, PairPrediction, Predictor

__all__ = ["GasResult", "PairPrediction", "Predictor"]
