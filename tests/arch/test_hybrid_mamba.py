"""The Mamba2 mixer a hybrid Mamba model's M layers get (transformers' NemotronHMamba2Mixer, its pure-torch path)
computes megatron-core's MambaMixer.

megatron-core's MambaMixer cannot run on CPU: it needs the mamba_ssm / causal_conv1d CUDA kernels (its training path
is mamba_ssm's mamba_split_conv1d_scan_combined) and allocates on torch.cuda.current_device(). So its equations, read
from megatron-core 0.16.1's ssm/mamba_mixer.py, are written out here as a plain sequential recurrence and compared with
transformers' chunked scan on tiny shapes:
  in_proj(x) = [z | xBC | dt]  (d_inner, d_inner + 2·groups·state, heads), no bias
  xBC = silu(causal depthwise conv1d(xBC) + conv bias), split into x (heads × head_dim), B, C (groups × state)
  dt = softplus(dt + dt_bias); A = -exp(A_log)                      (no dt clamp: mamba_ssm's dt_limit (0, inf))
  h_t = exp(dt·A) · h_{t-1} + dt · x_t ⊗ B_t;  y_t = h_t · C_t + D · x_t    (head h reads group h // (heads/groups))
  y = RMSNorm over groups of d_inner / groups (eps 1e-5) of y · silu(z), times its weight  (gate before norm)
  out = out_proj(y), no bias
One difference was real up to transformers 5.24: its NemotronHMamba2Mixer clamped dt from below at time_step_min
(0.001), which megatron-core does not; from 5.25 it clamps at the config's time_step_limit, (0.0, inf) by default.
The reference takes that floor as a parameter: with it, the reference equals transformers whatever dt is (so nothing
else differs); without it, they agree where dt stays above the floor (the docs note the rest)."""
import torch
import torch.nn.functional as F

from tests.arch.test_hybrid_flags import _translate


def _mixer(dt_scale=1.0):
    from transformers import AutoConfig
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer
    arch = dict(_translate().config.model.architecture)
    config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    torch.manual_seed(0)
    mixer = NemotronHMamba2Mixer(config, layer_idx=0)
    with torch.no_grad():
        for p in mixer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        mixer.A_log.copy_(torch.log(torch.empty(mixer.num_heads).uniform_(1, 16)))  # megatron-core's A init range
        mixer.dt_bias.copy_(torch.empty(mixer.num_heads).uniform_(-2, 0))
        mixer.in_proj.weight[-mixer.num_heads:] *= dt_scale  # the rows that give dt
        mixer.norm.weight.copy_(1 + 0.1 * torch.randn_like(mixer.norm.weight))
    return mixer.eval()


def megatron_mamba_mixer(m, x, dt_floor=0.0):
    """megatron-core's MambaMixer forward (training path) on x (batch, length, hidden), as a sequential scan;
    dt_floor 0.001 is transformers' clamp instead of megatron-core's none."""
    heads, head_dim, groups, state = m.num_heads, m.head_dim, m.n_groups, m.ssm_state_size
    inner = heads * head_dim
    z, xbc, dt = torch.split(F.linear(x, m.in_proj.weight), [inner, inner + 2 * groups * state, heads], dim=-1)
    length = x.shape[1]
    xbc = F.conv1d(xbc.transpose(1, 2), m.conv1d.weight, m.conv1d.bias, padding=m.conv_kernel_size - 1,
                   groups=xbc.shape[-1])[..., :length].transpose(1, 2)
    xs, B, C = torch.split(F.silu(xbc), [inner, groups * state, groups * state], dim=-1)
    xs = xs.reshape(*xs.shape[:2], heads, head_dim)
    B, C = (t.reshape(*t.shape[:2], groups, state).repeat_interleave(heads // groups, dim=2) for t in (B, C))
    dt = F.softplus(dt + m.dt_bias).clamp(min=dt_floor)  # (batch, length, heads)
    A = -torch.exp(m.A_log)
    h = torch.zeros(x.shape[0], heads, head_dim, state)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        h = decay * h + (dt[:, t, :, None] * xs[:, t])[..., None] * B[:, t, :, None, :]
        ys.append((h * C[:, t, :, None, :]).sum(-1) + m.D[:, None] * xs[:, t])
    y = torch.stack(ys, dim=1).reshape(x.shape[0], length, inner) * F.silu(z)
    grouped = y.reshape(*y.shape[:2], groups, inner // groups)
    y = (grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape_as(y) * m.norm.weight
    return F.linear(y, m.out_proj.weight), dt


def test_transformers_mixer_computes_megatron_cores_equations():
    """dt kept above 0.001 (small dt rows of in_proj): transformers' clamp never acts, and the two are equal."""
    mixer = _mixer(dt_scale=0.1)
    assert (mixer.num_heads, mixer.head_dim, mixer.n_groups, mixer.ssm_state_size, mixer.chunk_size) == (8, 8, 2, 8, 8)
    x = torch.randn(2, 19, 32)  # 19 tokens: two whole chunks of 8 and a padded one
    with torch.no_grad():
        ours = mixer(x)
        reference, dt = megatron_mamba_mixer(mixer, x)
    assert dt.min() > 1e-3
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_the_only_difference_is_transformers_dt_floor():
    """Large dt projections: some dt fall below 0.001. transformers equals the reference with the floor its mixer
    applies (time_step_limit's low end: time_step_min 0.001 up to transformers 5.24, the config's 0.0 from 5.25, as
    megatron-core), and differs from megatron-core's where that floor is above 0."""
    mixer = _mixer()
    floor = float(mixer.time_step_limit[0])
    assert floor in (0.0, 1e-3)
    x = torch.randn(2, 19, 32)
    with torch.no_grad():
        ours = mixer(x)
        floored, _ = megatron_mamba_mixer(mixer, x, dt_floor=floor)
        megatron, dt = megatron_mamba_mixer(mixer, x)
    assert dt.min() < 1e-3
    torch.testing.assert_close(ours, floored, rtol=1e-4, atol=1e-5)
    assert torch.allclose(ours, megatron, rtol=1e-4, atol=1e-5) == (floor == 0.0)


def test_the_reference_is_causal_and_uses_every_part():
    """The reference would notice a wrong split: changing a later token leaves earlier outputs, and zeroing D or the
    gate's half of in_proj changes the output."""
    mixer = _mixer()
    x = torch.randn(1, 12, 32)
    with torch.no_grad():
        base, _ = megatron_mamba_mixer(mixer, x)
        later = x.clone()
        later[:, 7] += 1.0
        moved, _ = megatron_mamba_mixer(mixer, later)
        torch.testing.assert_close(moved[:, :7], base[:, :7])
        assert not torch.allclose(moved[:, 7:], base[:, 7:])
        mixer.D.zero_()
        assert not torch.allclose(megatron_mamba_mixer(mixer, x)[0], base)
