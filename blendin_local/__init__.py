"""blendin-local: BlendIn inference-time alignment on two local GGUF models."""

from .generate import Generation, generate
from .many import Finished, GenerationBatch, generate_many
from .models import load_pair
from .pair import ModelPair
from .prompts import CHAT_FORMAT, QA_FORMAT, Conversation, Message, PlainFormat
from .sampling import SamplingSettings
from .settings import GenerationSettings
from .steps import Candidate, Provenance, Result, Step, StopReason

__all__ = [
    "CHAT_FORMAT", "QA_FORMAT", "Candidate", "Conversation", "Finished", "Generation",
    "GenerationBatch", "GenerationSettings", "Message", "ModelPair", "PlainFormat", "Provenance",
    "Result", "SamplingSettings", "Step", "StopReason", "generate", "generate_many", "load_pair",
]
