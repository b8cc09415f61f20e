# One image for every bertjobs service (migrate, workers, beat, ui). Same install step as the Makefile,
# except torch: on a GPU host take the CUDA build (the default wheel on Linux x86_64).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY db ./db
COPY migrations ./migrations
# The web view is always in; CPU workers with the OpenVINO engine (BERTJOBS_CLASSIFY_ENGINE=openvino or auto):
# --build-arg EXTRAS=openvino,ui
ARG EXTRAS="ui"
RUN pip install ".[${EXTRAS}]"
ENTRYPOINT ["bertjobs"]
