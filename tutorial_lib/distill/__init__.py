"""Distillation losses looked up by name from one registry, so a table row is a name plus
its parameters (torchdistill's idea). Every lesson that distils calls this code: lesson
02's "scratch + KD" row and the KD term of joint pruning alike."""

from tutorial_lib.distill.losses import LOSSES, get, kd_loss, register, teacher_kd
from tutorial_lib.distill.memo import TeacherMemo, remembered
from tutorial_lib.taps import Taps

__all__ = ["LOSSES", "Taps", "TeacherMemo", "get", "kd_loss", "register", "remembered", "teacher_kd"]
