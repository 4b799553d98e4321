using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests;

/// <summary>Fails when the TorchSharp native library cannot load (e.g. the Debian 12 GLIBCXX problem).</summary>
public class TorchSharpLoadTests
{
    [Fact]
    public void NativeLibraryLoadsAndComputes()
    {
        using var a = tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        using var b = a.matmul(a);
        Assert.Equal(new float[] { 7, 10, 15, 22 }, b.data<float>().ToArray());

        using var x = randn(3, 4, requires_grad: true);
        using var loss = (x * x).sum();
        loss.backward();
        var grad = x.grad!;
        Assert.True(grad.allclose(x * 2));
    }
}
