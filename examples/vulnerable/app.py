"""A deliberately vulnerable sample for the findings end-to-end test and the quickstart.

Never run or deploy it: each function below is a textbook mistake a scanner should report.
"""

import hashlib
import pickle
import subprocess

import yaml

DB_PASSWORD = "hunter2"


def run(command):
    # shell injection: the command string reaches a shell
    return subprocess.call(command, shell=True)


def load_settings(text):
    # arbitrary object construction from YAML
    return yaml.load(text)


def restore(blob):
    # unpickling untrusted data runs code
    return pickle.loads(blob)


def checksum(data):
    # a weak hash for something that may matter
    return hashlib.md5(data).hexdigest()


def calculate(expression):
    # code injection
    return eval(expression)
