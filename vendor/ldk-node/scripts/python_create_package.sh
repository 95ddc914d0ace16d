#!/bin/bash
cd bindings/python || exit 1
python3 -m build
