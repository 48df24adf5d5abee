# app.py: the tutorial's Flask app, with Offload instead of Celery and Redis
from flask import Flask, jsonify

from service.client import OffloadClient, TaskNotFound

app = Flask(__name__)
offload = OffloadClient()  # OFFLOAD_URL (default http://127.0.0.1:8000), OFFLOAD_TOKEN


@app.route("/process")
def process():
    task = offload.submit("long_task")  # returns at once; the service runs it
    return jsonify({"task_id": task.id, "status": task.status}), 202


@app.route("/tasks/<task_id>")
def task_status(task_id):
    task = offload.get(task_id)
    return jsonify({"task_id": task.id, "status": task.status,
                    "result": task.record.result})


@app.errorhandler(TaskNotFound)
def no_such_task(error):
    return jsonify({"error": "no such task"}), 404
