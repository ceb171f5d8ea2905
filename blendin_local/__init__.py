"""blendin-local: BlendIn inference-time alignment on two local GGUF models."""

from .generation.generate import Generation, generate
from .generation.many import Finished, GenerationBatch, generate_many
from .generation.sampling import SamplingSettings
from .generation.steps import Candidate, Provenance, Result, Step, StopReason
from .models import load_pair
from .pair import ModelPair
from .prompts import CHAT_FORMAT, QA_FORMAT, Conversation, Message, PlainFormat
from .settings import GenerationSettings

__all__ = [
    "CHAT_FORMAT", "QA_FORMAT", "Candidate", "Conversation", "Finished", "Generation",
    "GenerationBatch", "GenerationSettings", "Message", "ModelPair", "PlainFormat", "Provenance",
    "Result", "SamplingSettings", "Step", "StopReason", "generate", "generate_many", "load_pair",
]
