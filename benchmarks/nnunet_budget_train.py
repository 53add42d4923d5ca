"""Train nnU-Net v2 for a wall-time budget, then predict a folder: run with the Python of nnU-Net's own venv.

``bench_accuracy.py --recipes nnunet`` calls this after ``nnUNetv2_plan_and_preprocess``; it is not part of medseg and
imports only nnU-Net and torch. The trainer is nnU-Net's own ``nnUNetTrainer`` (its plan, network, loss, augmentation,
SGD with the poly schedule, mirroring TTA at prediction) with one change, the one medseg's default path gets too: the
number of epochs follows the budget. The first epoch is timed, ``num_epochs`` becomes what fits the budget and the
poly schedule is stretched over those epochs (nnU-Net's default is 1000 epochs of 250 iterations); training stops
when one more epoch would pass the budget. Where fewer than five 250-step epochs fit (large patches on a CPU), the
epochs are shortened so that about five fit. Prediction uses the final weights, as ``nnUNetv2_predict`` does by default.

Usage::

    nnUNet_raw=... nnUNet_preprocessed=... nnUNet_results=... \\
        python nnunet_budget_train.py DATASET_NAME BUDGET_SECONDS IMAGES_TS PREDICTIONS_OUT RESULT_JSON
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path

import torch
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

CPU = torch.device("cpu")
PROBE_ITERATIONS = 3  # timed at the start of the first epoch
MIN_EPOCHS = 5  # where fewer epochs of 250 steps fit the budget, the epochs are shortened


class BudgetTrainer(nnUNetTrainer):
    """``nnUNetTrainer`` whose epochs and poly schedule span a wall-time budget."""

    budget_seconds = 900.0
    iterations_per_epoch = 250

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = CPU):  # nnU-Net records these by name: no *args
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = self.iterations_per_epoch
        self.train_seconds = 0.0

    def run_training(self):
        self.on_train_start()
        started = time.perf_counter()
        epoch_seconds = None
        while self.current_epoch < self.num_epochs:
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = [self.train_step(next(self.dataloader_train)) for _ in range(PROBE_ITERATIONS)]
            if epoch_seconds is None:
                self._shorten_epochs_to_budget((time.perf_counter() - started) / PROBE_ITERATIONS)
            outputs += [self.train_step(next(self.dataloader_train))
                        for _ in range(self.num_iterations_per_epoch - PROBE_ITERATIONS)]
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                outputs = [self.validation_step(next(self.dataloader_val))
                           for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(outputs)
            self.on_epoch_end()
            elapsed = time.perf_counter() - started
            if epoch_seconds is None:  # the first epoch sets how many fit; the schedule anneals over them
                epoch_seconds = elapsed
                self.num_epochs = max(1, int(self.budget_seconds // epoch_seconds))
                self.lr_scheduler.max_steps = self.num_epochs
                self.print_to_log_file(f"budget {self.budget_seconds:.0f}s / {epoch_seconds:.1f}s per epoch: "
                                       f"{self.num_epochs} epochs")
            if elapsed + epoch_seconds > self.budget_seconds:
                break
        self.train_seconds = time.perf_counter() - started
        self.on_train_end()

    def _shorten_epochs_to_budget(self, step_seconds: float) -> None:
        """Where fewer than ``MIN_EPOCHS`` epochs of 250 steps fit, shorten the epoch (and its validation alike).

        Large 2D patches on a CPU (ISIC: batch 3 of 384 x 512) take seconds per step, so one nnU-Net epoch can exceed
        the whole budget; shorter epochs keep the poly schedule annealing within it. Validation is costed at a
        third of a training step (a forward pass only).
        """
        full_epoch = step_seconds * (self.num_iterations_per_epoch + self.num_val_iterations_per_epoch / 3)
        if self.budget_seconds >= MIN_EPOCHS * full_epoch:
            return
        val_share = self.num_val_iterations_per_epoch / self.num_iterations_per_epoch
        steps = self.budget_seconds / (MIN_EPOCHS * step_seconds * (1 + val_share / 3))
        self.num_iterations_per_epoch = max(PROBE_ITERATIONS, int(steps))
        self.num_val_iterations_per_epoch = max(1, round(self.num_iterations_per_epoch * val_share))
        self.print_to_log_file(f"{step_seconds:.1f}s per step: epochs of {self.num_iterations_per_epoch} steps and "
                               f"{self.num_val_iterations_per_epoch} validation steps, about {MIN_EPOCHS} in the "
                               f"budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_name")
    parser.add_argument("budget_seconds", type=float)
    parser.add_argument("images_ts")
    parser.add_argument("predictions_out")
    parser.add_argument("result_json")
    parser.add_argument("--iterations_per_epoch", type=int, default=250,
                        help="nnU-Net's 250; smaller only for a quick check of the pipeline")
    args = parser.parse_args()
    torch.set_num_threads(multiprocessing.cpu_count())  # what nnUNetv2_train does on the CPU
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / args.dataset_name
    BudgetTrainer.budget_seconds = args.budget_seconds
    BudgetTrainer.iterations_per_epoch = args.iterations_per_epoch
    plans = load_json(str(preprocessed / "nnUNetPlans.json"))
    plans["continue_training"] = False  # as nnUNetv2_train sets it without --c
    trainer = BudgetTrainer(plans=plans, configuration="2d", fold=0,
                            dataset_json=load_json(str(preprocessed / "dataset.json")), device=CPU)
    trainer.run_training()
    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()
    predictor = nnUNetPredictor(use_mirroring=True, perform_everything_on_device=False, device=CPU,
                                allow_tqdm=False)
    weights = [{k: v.detach().clone() for k, v in trainer.network.state_dict().items()}]
    predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager, weights,
                                    trainer.dataset_json, type(trainer).__name__,
                                    trainer.inference_allowed_mirroring_axes)
    images = sorted(Path(args.images_ts).glob("*_0000.png"))
    Path(args.predictions_out).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    predictor.predict_from_files_sequential([[str(p)] for p in images], args.predictions_out)
    Path(args.result_json).write_text(json.dumps({
        "train_seconds": trainer.train_seconds, "epochs": trainer.current_epoch,
        "iterations_per_epoch": trainer.num_iterations_per_epoch, "batch_size": trainer.batch_size,
        "patch_size": list(trainer.configuration_manager.patch_size),
        "predict_seconds": time.perf_counter() - started, "cases": len(images)}, indent=2))


if __name__ == "__main__":
    main()
