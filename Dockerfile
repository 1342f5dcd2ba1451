# Minimal image; the learner-environments work completes it (CPU torch, healthcheck).
FROM python:3.11-slim
WORKDIR /home/learner/mlcourse
COPY . .
RUN python3 course.py setup
EXPOSE 8888
CMD ["python3", "course.py", "lab", "--no-browser", "--ip=0.0.0.0"]
