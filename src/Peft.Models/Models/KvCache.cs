using static TorchSharp.torch;

namespace Peft.Models;

/// <summary>
/// Keys and values of earlier positions, per layer ([batch, kvHeads, time, headDim]), so each generated token only runs
/// the new position through the model; shared by the decoder families (Llama caches keys after the rotary embedding and
/// before the grouped-query repeat; GPT-2 caches every head). For inference: the cached tensors are detached.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;

    /// <summary>Creates an empty cache for <paramref name="layers"/> layers.</summary>
    /// <param name="layers">The model's layer count.</param>
    public KvCache(int layers)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
    }

    /// <summary>How many positions the cache holds (0 when empty; read between forwards).</summary>
    public long Length => LengthOf(_keys.Length - 1);

    /// <summary>How many positions layer <paramref name="layer"/> holds.</summary>
    /// <param name="layer">Layer index.</param>
    public long LengthOf(int layer) => _keys[layer]?.shape[2] ?? 0;

    /// <summary>
    /// Appends this step's keys and values for <paramref name="layer"/> and returns all of them (owned by the cache:
    /// do not dispose them).
    /// </summary>
    /// <param name="layer">Layer index.</param>
    /// <param name="keys">New keys [batch, kvHeads, new, headDim].</param>
    /// <param name="values">New values, same shape.</param>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        var oldK = _keys[layer];
        var oldV = _values[layer];
        var k = oldK is null ? keys.detach().clone() : cat(new[] { oldK, keys.detach() }, 2);
        var v = oldV is null ? values.detach().clone() : cat(new[] { oldV, values.detach() }, 2);
        k.DetachFromDisposeScope();
        v.DetachFromDisposeScope();
        oldK?.Dispose();
        oldV?.Dispose();
        _keys[layer] = k;
        _values[layer] = v;
        return (k, v);
    }

    /// <summary>Releases the cached tensors.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            _keys[i]?.Dispose();
            _values[i]?.Dispose();
            _keys[i] = null;
            _values[i] = null;
        }
    }
}
