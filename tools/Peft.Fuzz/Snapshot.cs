using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Fuzz;

/// <summary>
/// Everything a load may change, captured before it: every state-dict tensor (bytes), each parameter's requires_grad,
/// the adapter names, and any extra state a kind adds (a trainer's step, generator states). <see cref="Diff"/> says what
/// differs afterwards.
/// </summary>
public sealed class Snapshot
{
    private readonly List<(string Name, string Shape, byte[] Bytes)> _tensors = new();
    private readonly List<(string Name, bool RequiresGrad)> _grads = new();
    private readonly string _adapters;
    private readonly List<(string Name, Func<string> Read, string Value)> _extra = new();
    private readonly nn.Module _module;

    public Snapshot(nn.Module module, params (string Name, Func<string> Read)[] extra)
    {
        _module = module;
        foreach (var (name, tensor) in module.state_dict()) _tensors.Add((name, Shape(tensor), Bytes(tensor)));
        foreach (var (name, parameter) in module.named_parameters()) _grads.Add((name, parameter.requires_grad));
        _adapters = string.Join(",", module.AdapterNames());
        foreach (var (name, read) in extra) _extra.Add((name, read, read()));
    }

    /// <summary>Null when nothing changed, else the first differences.</summary>
    public string? Diff()
    {
        var problems = new List<string>();
        var now = _module.state_dict().ToList();
        if (now.Count != _tensors.Count) problems.Add($"state dict has {now.Count} tensors, had {_tensors.Count}");
        var byName = now.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        foreach (var (name, shape, bytes) in _tensors)
        {
            if (!byName.TryGetValue(name, out var tensor)) problems.Add($"{name} is gone");
            else if (Shape(tensor) != shape) problems.Add($"{name} shape {Shape(tensor)}, was {shape}");
            else if (!Bytes(tensor).AsSpan().SequenceEqual(bytes)) problems.Add($"{name} values changed");
        }
        var grads = _module.named_parameters().ToDictionary(p => p.name, p => p.parameter.requires_grad, StringComparer.Ordinal);
        foreach (var (name, was) in _grads)
        {
            if (grads.TryGetValue(name, out var now2) && now2 != was) problems.Add($"{name}.requires_grad {now2}, was {was}");
        }
        var adapters = string.Join(",", _module.AdapterNames());
        if (adapters != _adapters) problems.Add($"adapters [{adapters}], were [{_adapters}]");
        foreach (var (name, read, value) in _extra)
        {
            if (read() != value) problems.Add($"{name} changed");
        }
        return problems.Count == 0 ? null : string.Join("; ", problems.Take(5));
    }

    /// <summary>Null when every floating-point tensor of <paramref name="module"/> is finite, else the first that is not.</summary>
    public static string? NonFinite(nn.Module module)
    {
        foreach (var (name, tensor) in module.state_dict())
        {
            if (!tensor.is_floating_point()) continue;
            using var finite = isfinite(tensor);
            using var all = finite.all();
            if (!all.item<bool>()) return $"loaded tensor {name} holds NaN or infinite values";
        }
        return null;
    }

    public static string Shape(Tensor tensor) => string.Join("x", tensor.shape);

    public static byte[] Bytes(Tensor tensor)
    {
        using var cpu = tensor.detach().cpu().contiguous();
        return cpu.bytes.ToArray();
    }
}
