"""The steps a command runs over capsules: generate, validate (+ report), export, import (safeimport), deliver
(+ targets, notify), and ship, which chains them."""
