import { BadRequestException, Body, Controller, Get, Param, Post } from '@nestjs/common';
import { OrdersService, Payment } from './orders.service';

@Controller('orders')
export class OrdersController {
  constructor(private readonly orders: OrdersService) {}

  @Post(':id/pay')
  pay(@Param('id') id: string, @Body() body: { amount?: number }): Promise<Payment> {
    const amount = Number(body?.amount);
    if (!Number.isFinite(amount) || amount <= 0) {
      throw new BadRequestException('amount must be a positive number');
    }
    return this.orders.pay(id, amount);
  }

  @Get(':id')
  find(@Param('id') id: string): Promise<Payment> {
    return this.orders.find(id);
  }
}
