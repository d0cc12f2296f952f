"""Fisher spectrum (Eq. 8): the dual N × N Gram from the NTK equals the primal P × P spectrum."""
import numpy as np
import torch

from ttrlab.theory.fisher import fisher_eigenvalues, loss_gradient_gram, output_gradients, primal_fisher_eigenvalues
from ttrlab.theory.ntk import empirical_ntk, trainable_names

from test_theory_ntk import batch, lora, tiny_bert


def per_sample_loss_gradients(model, x, labels, names):
    params = dict(model.named_parameters())
    rows = []
    for i in range(x["input_ids"].shape[0]):
        n = int(x["attention_mask"][i].sum())
        logits = model(input_ids=x["input_ids"][i:i + 1, :n], token_type_ids=x["token_type_ids"][i:i + 1, :n]).logits
        loss = torch.nn.functional.cross_entropy(logits, labels[i:i + 1])
        grads = torch.autograd.grad(loss, [params[k] for k in names])
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def test_dual_gram_spectrum_equals_primal_spectrum():
    model = lora(tiny_bert(), rank=2).eval()
    x = batch(n=6)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    names = trainable_names(model)
    ntk = empirical_ntk(model, x, names)
    g = per_sample_loss_gradients(model, x, labels, names)
    assert g.shape[1] < 600  # the primal P × P matrix is small enough to diagonalise here
    gram = loss_gradient_gram(ntk.kernel, ntk.logits, labels)
    assert torch.allclose(gram, (g @ g.T).double(), rtol=1e-4, atol=1e-7 * gram.abs().max().item())
    dual = fisher_eigenvalues(ntk.kernel, ntk.logits, labels)
    primal = primal_fisher_eigenvalues(g)
    assert np.allclose(dual, primal[: len(dual)], rtol=1e-4, atol=1e-7 * primal[0])
    assert np.all(np.abs(primal[len(dual):]) <= 1e-6 * primal[0])  # the rest of I's spectrum is zero


def test_output_gradient_is_softmax_minus_onehot():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    r = output_gradients(logits, torch.tensor([0, 1]))
    p = torch.softmax(logits.double(), -1)
    assert torch.allclose(r, p - torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert torch.allclose(r.sum(-1), torch.zeros(2, dtype=torch.float64))


def test_fisher_takes_tensors_as_they_come_off_the_device():
    """The NTK stays on the run's device: labels are moved to the logits' device (here: given as
    a list), eigenvalues come back as host numpy, and the spectrum summary also accepts a tensor."""
    from ttrlab.theory.information import summarize_spectrum

    model = lora(tiny_bert(), rank=2)
    ntk = empirical_ntk(model, batch(n=4))
    labels = [0, 1, 1, 0]
    eigenvalues = fisher_eigenvalues(ntk.kernel, ntk.logits, labels)
    assert isinstance(eigenvalues, np.ndarray)
    assert np.array_equal(eigenvalues, fisher_eigenvalues(ntk.kernel, ntk.logits, torch.tensor(labels)))
    assert summarize_spectrum(torch.from_numpy(eigenvalues)) == summarize_spectrum(eigenvalues)
